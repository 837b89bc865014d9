"""Profiles test helpers: catalogue items with deterministic fake vectors (no BERT), event builders.

Items go through the catalogue's real services (``items_upsert``, ``items_encode``); only the text
encoder is replaced by a hash-seeded one, so ``on_item_vectors_ready`` fires exactly as in production.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import numpy as np
import pytest

DIM = 384


def fake_vector(text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return vec / np.linalg.norm(vec)


class FakeEncoder:
    model_id = "fake-hash-encoder"
    dim = DIM

    def encode(self, texts: list[str]) -> Any:
        from apps.catalog.encoder import EncodeResult

        return EncodeResult(vectors=np.stack([fake_vector(t) for t in texts]), truncated=[False] * len(texts))


def make_items(tenant_id: int, ids: Iterable[str], *, encode: bool = True) -> dict[str, int]:
    """Create items (and, with ``encode``, their vectors); returns external id -> pk."""
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_upsert
    from apps.catalog.validation import ItemInput

    ids = list(ids)
    items = [
        ItemInput(
            external_id=i, title=f"Item {i}", description="", categories=("c",), attributes={}, available=True
        )
        for i in ids
    ]
    with mock.patch("apps.catalog.services.encoding_enqueue"):
        items_upsert(tenant_id=tenant_id, items=items)
    pks = item_pks_by_external_ids(tenant_id, ids)
    if encode:
        encode_items(tenant_id, list(pks.values()))
    return pks


def encode_items(tenant_id: int, item_pks: list[int]) -> None:
    from apps.catalog.services import items_encode

    with mock.patch("apps.catalog.encoding.encoder_for_tenant", return_value=FakeEncoder()):
        items_encode(tenant_id=tenant_id, item_pks=item_pks)


def event(
    user: str,
    item: str,
    kind: str = "view",
    *,
    value: float | None = None,
    ts: Any = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or uuid.uuid4().hex,
        "user": user,
        "item": item,
        "type": kind,
    }
    if value is not None:
        body["value"] = value
    body["timestamp"] = ts if ts is not None else (datetime.now(tz=UTC) - timedelta(minutes=5)).isoformat()
    return body


@pytest.fixture
def items_a(tenant_a: Any) -> dict[str, int]:
    return make_items(tenant_a.tenant.id, [f"i{n}" for n in range(6)])


@pytest.fixture
def audit_log() -> Any:
    """Every ``apps.core.audit.record`` call made by profiles code, kwargs as recorded."""
    calls: list[dict[str, Any]] = []
    from apps.core import audit

    real = audit.record

    def spy(**kwargs: Any) -> None:
        calls.append(kwargs)
        real(**kwargs)

    with mock.patch.object(audit, "record", side_effect=spy):
        yield calls


def state_of(tenant_id: int, user_ref: str) -> Any:
    """The user's state, which the test expects to exist."""
    from apps.profiles.selectors import user_state

    state = user_state(tenant_id, user_ref)
    assert state is not None, "expected a state"
    return state


def pseudonym_id(tenant_id: int, user_ref: str) -> int:
    from apps.profiles.selectors import user_pseudonym_id

    found = user_pseudonym_id(tenant_id, user_ref)
    assert found is not None
    return found

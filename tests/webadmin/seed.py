"""Test data for the admin's pages, made through the owning apps' services (no queueing, no BERT)."""

from __future__ import annotations

import hashlib
import time
from typing import Any
from unittest import mock

import numpy as np


class _FakeEncoder:
    """Deterministic vectors instead of BERT: the catalogue's real encode service, minus the model."""

    model_id = "fake-hash-encoder"
    dim = 384

    def encode(self, texts: list[str]) -> Any:
        from apps.catalog.encoder import EncodeResult

        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vec = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(vec / np.linalg.norm(vec))
        return EncodeResult(vectors=np.stack(rows), truncated=[False] * len(texts))


def make_items(
    tenant_id: int, titles: dict[str, str], *, encode: tuple[str, ...] = (), fail: tuple[str, ...] = ()
) -> None:
    """Items through the catalogue's services (no queueing); ``encode``/``fail`` pick their final state."""
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_encode, items_mark_failed, items_upsert
    from apps.catalog.validation import parse_items

    with mock.patch("apps.catalog.services.encoding_enqueue"):
        items_upsert(
            tenant_id=tenant_id, items=parse_items([{"id": k, "title": v} for k, v in titles.items()])
        )
    pks = item_pks_by_external_ids(tenant_id, titles)
    if encode:
        with mock.patch("apps.catalog.encoding.encoder_for_tenant", return_value=_FakeEncoder()):
            items_encode(tenant_id=tenant_id, item_pks=[pks[i] for i in encode])
    if fail:
        items_mark_failed(tenant_id=tenant_id, item_pks=[pks[i] for i in fail], error="test")


def write_latency(
    tenant_id: int, endpoint_class: str, durations_ms: list[float], *, minutes_ago: int, status: int = 200
) -> None:
    """Store latency observations as the SLO recorder would flush them."""
    from apps.slo import buckets
    from apps.slo.endpoints import status_class
    from apps.slo.recorder import Batch, Cell
    from apps.slo.services import slo_histograms_write

    minute = int((time.time() - minutes_ago * 60) // 60) * 60
    cell = Cell()
    for ms in durations_ms:
        cell.add(buckets.bucket_index(ms), ms)
    slo_histograms_write(
        batch=Batch(requests={(tenant_id, minute, endpoint_class, status_class(status)): cell}, tasks={})
    )


def rate_items(api: Any, persona: Any, user: str, ratings: dict[str, float]) -> None:
    """Rating events (one minute apart, in the given order) through the real events API; asserts 201."""
    import uuid

    events = [
        {
            "event_id": uuid.uuid4().hex,
            "user": user,
            "item": item,
            "type": "rating",
            "value": value,
            "timestamp": 1_600_000_000 + 60 * n,
        }
        for n, (item, value) in enumerate(ratings.items())
    ]
    response = api.post("/api/v1/events", {"events": events}, format="json", **persona.auth)
    assert response.status_code == 201, response.content

"""Serving test fixtures: a small real catalogue (the first MovieLens movies, encoded by the real BERT
encoder in this process, no worker needed) and helpers to post events and read recommendations.

Personas: ``shop`` is tenant A with 40 movies (key with every scope); ``other_shop`` is tenant B with a
disjoint catalogue of 10 movies. Each test uses its own end-user ids, so tests never see each
other's events even though the catalogue is shared within the module.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.test.utils import CaptureQueriesContext

from tests.support import TenantPersona, make_tenant

ROOT = Path(__file__).resolve().parents[2]
MOVIELENS = ROOT / "data" / "ml-latest-small"
_clock = itertools.count(1_600_000_000, 60)


@dataclass
class Shop:
    persona: TenantPersona
    titles: dict[str, str]  # external id -> title
    categories: dict[str, list[str]]
    pks: dict[str, int]

    @property
    def tenant_id(self) -> int:
        return int(self.persona.tenant.id)


def build_shop(prefix: str, movies: slice) -> Shop:
    """A tenant whose items are MovieLens movies, encoded synchronously with the real encoder."""
    from apps.catalog.importing import movielens_items
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_encode, items_upsert

    persona = make_tenant(prefix)
    tenant_id = int(persona.tenant.id)
    items = movielens_items(MOVIELENS)[movies]
    with mock.patch("apps.catalog.services.encoding_enqueue"):  # encoded right here, not by a worker
        items_upsert(tenant_id=tenant_id, items=items)
        pks = item_pks_by_external_ids(tenant_id, [i.external_id for i in items])
        items_encode(tenant_id=tenant_id, item_pks=list(pks.values()))
    return Shop(
        persona=persona,
        titles={i.external_id: i.title for i in items},
        categories={i.external_id: list(i.categories) for i in items},
        pks=pks,
    )


@pytest.fixture(scope="module")
def shop(django_db_setup: None, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        yield build_shop("shop", slice(0, 40))


@pytest.fixture(scope="module")
def other_shop(django_db_setup: None, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        yield build_shop("other", slice(100, 110))


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:10]}"


def rate(api: Any, persona: TenantPersona, user: str, ratings: dict[str, float]) -> Any:
    """POST rating events (in the given order, one minute apart) through the events API; asserts 201."""
    events = [
        {
            "event_id": uuid.uuid4().hex,
            "user": user,
            "item": item,
            "type": "rating",
            "value": value,
            "timestamp": next(_clock),
        }
        for item, value in ratings.items()
    ]
    response = api.post("/api/v1/events", {"events": events}, format="json", **persona.auth)
    assert response.status_code == 201, response.content
    return response


def recommend(api: Any, persona: TenantPersona, **query: Any) -> dict[str, Any]:
    response = api.get("/api/v1/recommendations", query, **persona.auth)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def search(api: Any, persona: TenantPersona, **query: Any) -> dict[str, Any]:
    response = api.get("/api/v1/search", query, **persona.auth)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def ids(body: dict[str, Any]) -> list[str]:
    return [item["id"] for item in body["items"]]


HNSW_KNOBS = "SELECT set_config('hnsw.ef_search'"
TENANT_GUC = "SELECT set_config('app.tenant_id'"


class CaptureRoundTrips(CaptureQueriesContext):
    """Django's query log, plus whether each statement a Django cursor ran was queued in a psycopg
    pipeline (so ``round_trips`` counts what really left together, not what is expected to)."""

    def __enter__(self) -> CaptureRoundTrips:
        self.pipelined: list[bool] = []
        self._wrapping = self.connection.execute_wrapper(self._record)
        self._wrapping.__enter__()
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        super().__exit__(*exc)
        self._wrapping.__exit__(*exc)

    def _record(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        from psycopg import pq

        self.pipelined.append(self.connection.connection.pgconn.pipeline_status == pq.PipelineStatus.ON)
        return execute(sql, params, many, context)


def round_trips(captured: CaptureRoundTrips) -> int:
    """Round trips of the statements Django logged. A statement that left in one pipeline with the
    next does not count: the HNSW knobs with their scan (``apps.core.hnsw``), and a transaction's
    ``BEGIN`` when the RLS tenant after it was queued in a pipeline (``apps.core.tenant_db`` sends
    that ``BEGIN`` itself, in the same pipeline; ``tests/core/test_tenant_context.py``)."""
    statements = [" ".join(q["sql"].split()) for q in captured.captured_queries]
    ran = iter(captured.pipelined)  # Django logs BEGIN and COMMIT itself; every other statement ran
    flags = [False if sql in ("BEGIN", "COMMIT", "ROLLBACK") else next(ran) for sql in statements]
    riding = 0
    for i, sql in enumerate(statements):
        if sql.startswith(HNSW_KNOBS):
            assert i + 1 < len(statements) and "<=>" in statements[i + 1], "the knobs ride with a scan"
            assert flags[i] and flags[i + 1], "the knobs and the scan are queued in one pipeline"
            riding += 1
        elif sql == "BEGIN" and i + 1 < len(statements) and statements[i + 1].startswith(TENANT_GUC):
            riding += flags[i + 1]
    return len(statements) - riding

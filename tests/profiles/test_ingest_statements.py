"""The ingest's round trips, counted, and idempotency on that path.

``events_ingest`` sends two statements of its own for users that exist, whatever the batch size
(one read that locks the state rows and resolves items and vectors, one write that inserts the
events and, when all are new, the states); one more for new users, one more for a resend that
mixes stored and new events. Counted with Django's query capture (which sees the ingest's
server-bound cursor too); no timings.

Personas: ``tenant_a`` (ingest key, items i0-i5 with vectors), ``tenant_b`` (another tenant).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.tenant_db import activate_tenant, tenant_context
from apps.modeling.ml.features import FeatureConfig, new_state, state_add_event
from apps.profiles.models import UserEvent
from apps.profiles.services import IngestResult, events_ingest
from apps.profiles.validation import validate_events
from tests.profiles.conftest import event, fake_vector, make_items, state_of

URL = "/api/v1/events"
_TRANSACTION = ("BEGIN", "COMMIT", "SELECT set_config(")


def ingest(tenant_id: int, events: list[dict[str, Any]]) -> tuple[IngestResult, list[str]]:
    """Ingest in a tenant-scoped transaction as ``TenantAPIView`` opens it; the statements of the ingest itself."""
    validated = validate_events({"events": events})
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        activate_tenant(tenant_id)
        result = events_ingest(tenant_id=tenant_id, events=validated)
    return result, [
        q["sql"].strip() for q in captured.captured_queries if not q["sql"].strip().startswith(_TRANSACTION)
    ]


def stored_events(tenant_id: int) -> int:
    with tenant_context(tenant_id):
        return UserEvent.objects.filter(tenant_id=tenant_id).count()


def test_a_single_event_of_a_known_user_is_one_read_and_one_write(tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    ingest(tenant_id, [event("ann", "i1")])  # ann exists from now on
    result, statements = ingest(tenant_id, [event("ann", "i2")])
    assert result == IngestResult(1, 1, 0, 0)
    assert len(statements) == 2, statements
    assert statements[0].startswith("WITH locked AS") and "FOR UPDATE OF s" in statements[0]
    assert statements[1].startswith("WITH inserted AS")


def test_a_batch_of_1000_costs_the_same_two_statements(tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    ingest(tenant_id, [event(f"b{n}", "i1") for n in range(50)])
    result, statements = ingest(
        tenant_id, [event(f"b{n % 50}", f"i{n % 6}", event_id=f"e{n}") for n in range(1000)]
    )
    assert result == IngestResult(1000, 1000, 0, 0)
    assert len(statements) == 2, statements
    assert state_of(tenant_id, "b7")["n_events"] == 1 + 20


def test_new_users_cost_one_more_statement(tenant_a, items_a):
    ingest(tenant_a.tenant.id, [event("old", "i1")])  # the tenant's pseudonym key is read once per process
    result, statements = ingest(
        tenant_a.tenant.id, [event("new-1", "i1"), event("new-2", "i2"), event("new-1", "i3")]
    )
    assert result == IngestResult(3, 3, 0, 0)
    assert len(statements) == 3, statements
    assert state_of(tenant_a.tenant.id, "new-1")["n_events"] == 2


def test_a_full_http_request_for_one_event_sends_two_statements_after_the_tenant_is_set(
    api, tenant_a, items_a
):
    api.post(URL, {"events": [event("cat", "i1")]}, format="json", **tenant_a.auth)  # cat exists
    with CaptureQueriesContext(connection) as captured:
        response = api.post(URL, {"events": [event("cat", "i2")]}, format="json", **tenant_a.auth)
    assert response.status_code == 201
    sql = [q["sql"].strip() for q in captured.captured_queries]
    # Before the tenant GUC: BEGIN and the API-key lookup (cached for 5 s in production, not in tests).
    # From it on: the GUC, the ingest's read and write, COMMIT; against the bare INSERT's 1 statement.
    scoped = next(n for n, q in enumerate(sql) if q.startswith("SELECT set_config('app.tenant_id'"))
    assert sql[0] == "BEGIN"
    assert [q.split()[0] for q in sql[scoped:]] == ["SELECT", "WITH", "WITH", "COMMIT"], sql[scoped:]


def test_a_resent_event_is_stored_and_folded_once(tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    once = event("dan", "i1", event_id="evt-1")
    assert ingest(tenant_id, [once])[0] == IngestResult(1, 1, 0, 0)
    before = state_of(tenant_id, "dan")
    result, statements = ingest(tenant_id, [once])
    assert result == IngestResult(1, 0, 1, 0)
    assert len(statements) == 2  # the conditional state write wrote nothing, and there is nothing new to fold
    after = state_of(tenant_id, "dan")
    assert after["n_events"] == before["n_events"] == 1
    assert np.array_equal(after["content_sum"], before["content_sum"])
    assert stored_events(tenant_id) == 1


def test_a_resend_mixed_with_new_events_folds_only_the_new_ones(tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    t0 = datetime(2025, 5, 1, tzinfo=UTC)
    first = event("eve", "i1", "rating", value=4, ts=t0.isoformat(), event_id="a")
    assert ingest(tenant_id, [first])[0].new == 1
    second = event("eve", "i2", "purchase", ts=(t0 + timedelta(minutes=1)).isoformat(), event_id="b")
    result, statements = ingest(tenant_id, [first, second])
    assert result == IngestResult(2, 1, 1, 0)
    assert len(statements) == 3  # read, write (events only), then the states of the new events alone
    cfg = FeatureConfig()
    expected = new_state(384, cfg)
    state_add_event(expected, items_a["i1"], 4.0, t0.timestamp(), fake_vector("Item i1. c"), cfg)
    state_add_event(expected, items_a["i2"], 4.5, t0.timestamp() + 60, fake_vector("Item i2. c"), cfg)
    state = state_of(tenant_id, "eve")
    assert state["n_events"] == 2 and state["last_items"] == [items_a["i1"], items_a["i2"]]
    assert np.allclose(state["content_sum"], expected["content_sum"], rtol=1e-9, atol=1e-12)
    assert np.allclose(state["weight_sum"], expected["weight_sum"], rtol=1e-9)
    assert stored_events(tenant_id) == 2


def test_pending_events_are_counted_and_stored_unfolded(tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    make_items(tenant_id, ["later"], encode=False)
    result, _ = ingest(tenant_id, [event("fin", "later"), event("fin", "i1")])
    assert result == IngestResult(2, 2, 0, 1)
    assert state_of(tenant_id, "fin")["n_events"] == 1
    with tenant_context(tenant_id):
        assert UserEvent.objects.filter(tenant_id=tenant_id, folded=False).count() == 1


def test_the_ingest_read_sees_only_the_tenants_own_items_and_users(api, tenant_a, tenant_b, items_a):
    # Given: tenant B has an item with the same id as A's, without a vector, and a user of the same name
    make_items(tenant_b.tenant.id, ["i1"], encode=False)
    assert (
        api.post(URL, {"events": [event("gil", "i1")]}, format="json", **tenant_b.auth).json()["pending"] == 1
    )
    # When: A ingests for "gil" on "i1"
    response = api.post(URL, {"events": [event("gil", "i1")]}, format="json", **tenant_a.auth)
    # Then: A's own item (with its vector) was used, and A's user is a user of its own
    assert response.json() == {"accepted": 1, "new": 1, "duplicates": 0, "pending": 0}
    assert state_of(tenant_a.tenant.id, "gil")["last_items"] == [items_a["i1"]]
    assert stored_events(tenant_b.tenant.id) == 1

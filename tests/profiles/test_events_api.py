"""POST /api/v1/events: whole-batch validation, idempotency, real-time state, pending items.

Personas: ``tenant_a`` (ingest key, items i0-i5 with vectors), ``tenant_b`` (another tenant that
must see nothing of A), ``anon`` (no key).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.core.tenant_db import tenant_context
from apps.modeling.ml.features import FeatureConfig, new_state, state_add_event
from apps.profiles.models import UserEvent
from apps.profiles.selectors import seen_item_pks, user_pseudonym_id, user_state, user_state_and_seen
from apps.profiles.services import user_state_rebuild
from tests.profiles.conftest import encode_items, event, fake_vector, make_items, pseudonym_id, state_of
from tests.support import make_tenant

URL = "/api/v1/events"


def post(api, persona, events):
    return api.post(URL, {"events": events}, format="json", **persona.auth)


def stored_events(tenant_id):
    with tenant_context(tenant_id):
        return UserEvent.objects.filter(tenant_id=tenant_id).count()


def test_a_batch_is_stored_and_the_next_read_reflects_it(api, tenant_a, items_a):
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    batch = [
        event("alice", "i1", "view", ts=(t0 + timedelta(seconds=1)).isoformat()),
        event("alice", "i2", "rating", value=5, ts=(t0 + timedelta(seconds=2)).isoformat()),
        event("bob", "i3", "purchase", ts=(t0 + timedelta(seconds=3)).isoformat()),
    ]
    response = post(api, tenant_a, batch)
    assert response.status_code == 201, response.json()
    assert response.json() == {"accepted": 3, "new": 3, "duplicates": 0, "pending": 0}
    tenant_id = tenant_a.tenant.id
    state = state_of(tenant_id, "alice")
    # the stored state equals folding the same events with the shared feature code
    cfg = FeatureConfig()
    expected = new_state(384, cfg)
    state_add_event(expected, items_a["i1"], 3.0, t0.timestamp() + 1, fake_vector("Item i1. c"), cfg)
    state_add_event(expected, items_a["i2"], 5.0, t0.timestamp() + 2, fake_vector("Item i2. c"), cfg)
    assert state["n_events"] == 2 and state["last_items"] == [items_a["i1"], items_a["i2"]]
    assert state["rating_sum"] == 8.0
    assert np.allclose(state["weight_sum"], expected["weight_sum"])
    assert seen_item_pks(tenant_id, "bob") == {items_a["i3"]}
    assert user_state_and_seen(tenant_id, "alice")[1] == {items_a["i1"], items_a["i2"]}


def test_a_retried_batch_creates_no_duplicates_and_says_so(api, tenant_a, items_a):
    batch = [event("carol", "i1"), event("carol", "i2")]
    assert post(api, tenant_a, batch).json()["new"] == 2
    before = state_of(tenant_a.tenant.id, "carol")
    again = post(api, tenant_a, [*batch, event("carol", "i3")])
    assert again.status_code == 201
    assert again.json() == {"accepted": 3, "new": 1, "duplicates": 2, "pending": 0}
    after = state_of(tenant_a.tenant.id, "carol")
    assert after["n_events"] == before["n_events"] + 1  # duplicates were not folded twice
    assert stored_events(tenant_a.tenant.id) == 3


def test_event_ids_are_per_tenant(api, tenant_a, tenant_b, items_a):
    make_items(tenant_b.tenant.id, ["i1"])
    shared = event("dave", "i1", event_id="same-id")
    assert post(api, tenant_a, [shared]).json()["new"] == 1
    assert post(api, tenant_b, [shared]).json()["new"] == 1
    assert state_of(tenant_b.tenant.id, "dave")["n_events"] == 1


def test_an_invalid_event_rejects_the_whole_batch_listing_each_bad_one(api, tenant_a, items_a):
    batch = [
        event("erin", "i1"),
        event("erin", "i2", "like"),
        event("erin", "i3", "rating"),
        event("erin", "nope"),
    ]
    response = post(api, tenant_a, batch)
    assert response.status_code == 400
    body = response.json()["error"]
    assert body["code"] == "invalid_events"
    assert [(p["index"], sorted(p["errors"])) for p in body["details"]["events"]] == [
        (1, ["type"]),
        (2, ["value"]),
    ]
    assert stored_events(tenant_a.tenant.id) == 0
    assert user_pseudonym_id(tenant_a.tenant.id, "erin") is None


def test_unknown_items_are_a_400_with_their_indices_and_nothing_is_written(api, tenant_a, items_a):
    response = post(
        api, tenant_a, [event("fay", "i1"), event("fay", "ghost"), event("fay", "i2"), event("fay", "ghost")]
    )
    assert response.status_code == 400
    problems = response.json()["error"]["details"]["events"]
    assert [p["index"] for p in problems] == [1, 3]
    assert problems[0]["errors"] == {"item": "no such item in the catalogue"}
    assert stored_events(tenant_a.tenant.id) == 0
    assert user_pseudonym_id(tenant_a.tenant.id, "fay") is None


def test_another_tenants_item_is_unknown(api, tenant_a, tenant_b, items_a):
    response = post(api, tenant_b, [event("gus", "i1")])
    assert response.status_code == 400
    assert (
        response.json()["error"]["details"]["events"][0]["errors"]["item"] == "no such item in the catalogue"
    )


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ('{"events": [', "application/json", 400),
        ("[]", "application/json", 400),
        ('{"events": {}}', "application/json", 400),
        ('{"events": []}', "application/json", 400),
        (
            '{"events": [{"event_id": "x", "user": "u", "item": "i1", "type": "view", "value": NaN}]}',
            "application/json",
            400,
        ),
        (
            '{"events": [{"event_id": "x", "user": "\\ud800", "item": "i1", "type": "view"}]}',
            "application/json",
            400,
        ),
        ("events=1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_malformed_requests_are_clear_4xx(api, tenant_a, items_a, body, content_type, status):
    response = api.generic("POST", URL, body, content_type=content_type, **tenant_a.auth)
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert stored_events(tenant_a.tenant.id) == 0


def test_more_than_1000_events_is_413(api, tenant_a, items_a):
    response = post(api, tenant_a, [event("h", "i1", event_id=str(n)) for n in range(1001)])
    assert response.status_code == 413
    assert response.json()["error"]["details"] == {"max_events": 1000, "received": 1001}


def test_1000_events_are_accepted_in_one_batch(api, tenant_a, items_a):
    batch = [event(f"u{n % 50}", f"i{n % 6}", event_id=str(n)) for n in range(1000)]
    response = post(api, tenant_a, batch)
    assert response.status_code == 201
    assert response.json()["new"] == 1000
    assert state_of(tenant_a.tenant.id, "u7")["n_events"] == 20


def test_a_future_or_ancient_timestamp_is_rejected(api, tenant_a, items_a):
    future = (datetime.now(tz=UTC) + timedelta(days=2)).isoformat()
    response = post(api, tenant_a, [event("ivy", "i1", ts=future), event("ivy", "i2", ts=0)])
    assert response.status_code == 400
    assert [p["index"] for p in response.json()["error"]["details"]["events"]] == [0, 1]


def test_events_need_the_ingest_scope(api, anon, items_a):
    serve_only = make_tenant("srv", scopes=["serve"])
    assert post(api, serve_only, [event("jo", "i1")]).status_code == 403
    assert anon.post(URL, {"events": [event("jo", "i1")]}, format="json").status_code == 401


def test_events_for_items_without_vectors_wait_and_fold_in_when_the_vector_arrives(api, tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    pending = make_items(tenant_id, ["new1"], encode=False)
    t0 = datetime(2025, 2, 1, tzinfo=UTC)
    response = post(
        api,
        tenant_a,
        [
            event("kim", "i1", ts=t0.isoformat()),
            event("kim", "new1", "purchase", ts=(t0 + timedelta(seconds=5)).isoformat()),
        ],
    )
    assert response.json() == {"accepted": 2, "new": 2, "duplicates": 0, "pending": 1}
    assert state_of(tenant_id, "kim")["n_events"] == 1
    assert seen_item_pks(tenant_id, "kim") == {items_a["i1"], pending["new1"]}  # pending items count as seen

    encode_items(tenant_id, [pending["new1"]])  # the catalogue's encode path runs on_item_vectors_ready

    state = state_of(tenant_id, "kim")
    assert state["n_events"] == 2 and state["last_items"][-1] == pending["new1"]
    with tenant_context(tenant_id):
        assert not UserEvent.objects.filter(tenant_id=tenant_id, folded=False).exists()
    encode_items(tenant_id, [pending["new1"]])  # idempotent: nothing is folded twice
    assert state_of(tenant_id, "kim")["n_events"] == 2


def test_rebuild_from_events_matches_the_incremental_state(api, tenant_a, items_a):
    t0 = datetime(2025, 3, 1, tzinfo=UTC)
    post(
        api,
        tenant_a,
        [
            event(
                "lee",
                f"i{n % 6}",
                "rating",
                value=1 + n % 5,
                ts=(t0 + timedelta(minutes=n)).isoformat(),
                event_id=f"e{n}",
            )
            for n in range(15)
        ],
    )
    tenant_id = tenant_a.tenant.id
    incremental = state_of(tenant_id, "lee")
    user_state_rebuild(tenant_id, pseudonym_id(tenant_id, "lee"))
    rebuilt = state_of(tenant_id, "lee")
    assert rebuilt["n_events"] == incremental["n_events"] == 15
    assert rebuilt["last_items"] == incremental["last_items"]
    assert np.allclose(rebuilt["content_sum"], incremental["content_sum"])
    assert np.allclose(rebuilt["weight_sum"], incremental["weight_sum"])


def test_unknown_users_read_as_cold_start(tenant_a):
    assert user_state(tenant_a.tenant.id, "never-seen") is None
    assert seen_item_pks(tenant_a.tenant.id, "never-seen") == set()
    assert user_state_and_seen(tenant_a.tenant.id, "never-seen") == (None, set())


def test_one_users_events_are_invisible_to_another_tenant(api, tenant_a, tenant_b, items_a):
    post(api, tenant_a, [event("mo", "i1")])
    assert user_state(tenant_b.tenant.id, "mo") is None
    assert seen_item_pks(tenant_b.tenant.id, "mo") == set()
    assert api.get("/api/v1/users/mo", **tenant_b.auth).status_code == 404


def test_ingest_costs_a_fixed_number_of_queries_whatever_the_batch_size(
    api, tenant_a, items_a, django_assert_max_num_queries
):
    post(api, tenant_a, [event(f"q{n}", "i1") for n in range(20)])  # the users exist
    small = [event("q1", "i2")]
    large = [event(f"q{n % 20}", f"i{n % 6}") for n in range(200)]
    # BEGIN, the API-key lookup (uncached in tests: savepoint, key-prefix GUC, select, reset, release),
    # the tenant GUC, then ours: one read (state rows locked, items and vectors), one write, COMMIT
    # (tests/profiles/test_ingest_statements.py pins the ingest's own two exactly)
    with django_assert_max_num_queries(10) as small_ctx:
        assert post(api, tenant_a, small).status_code == 201
    with django_assert_max_num_queries(10) as large_ctx:
        assert post(api, tenant_a, large).status_code == 201
    assert len(large_ctx.captured_queries) == len(small_ctx.captured_queries)


def test_deleting_an_item_removes_its_events_but_not_the_user(api, tenant_a, items_a):
    post(api, tenant_a, [event("pia", "i1"), event("pia", "i2")])
    response = api.delete("/api/v1/items/i1", **tenant_a.auth)
    assert response.status_code in (200, 204), response.content
    tenant_id = tenant_a.tenant.id
    assert seen_item_pks(tenant_id, "pia") == {items_a["i2"]}
    assert [e["item"] for e in api.get("/api/v1/users/pia", **tenant_a.auth).json()["events"]] == ["i2"]

"""The personal and popular strategies once a tenant has trained, and model swaps under load.

One tenant per module (the modeling tests' seeded tenant: 30 items in 3 categories, 40 users who
each stay in one category), trained twice in process with ε = 4 (versions 1 and 2, different seeds);
training is the modeling app's own service, run here without a broker.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection

from tests.modeling.support import seed_tenant, set_modeling
from tests.serving.conftest import CaptureRoundTrips, ids, recommend, round_trips
from tests.support import make_tenant

pytestmark = pytest.mark.usefixtures("live_db")


def _train(tenant_id: int) -> None:
    from apps.modeling import services, training

    original = services._enqueue
    services._enqueue = lambda tenant_id, run_id: None  # type: ignore[assignment]  # run it right here instead
    try:
        run = services.training_run_start(tenant_id=tenant_id, epsilon=4.0, actor="test")
    finally:
        services._enqueue = original  # type: ignore[assignment]
    assert training.training_run_execute(tenant_id=tenant_id, run_id=run["id"]) == "succeeded"


@pytest.fixture(scope="module")
def trained(django_db_setup: None, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        persona = make_tenant("personal")
        seed_tenant(persona)
        set_modeling(persona, seed=3)
        _train(persona.tenant.id)
        set_modeling(persona, seed=11)
        _train(persona.tenant.id)
        yield persona


@pytest.fixture(autouse=True)
def _pointer_read_every_request(settings: Any) -> Any:
    from apps.modeling import selectors

    settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 0.0}
    selectors.clear_pointer_cache()
    yield
    selectors.clear_pointer_cache()


def _expected(tenant_id: int, version: int, user: str, k: int = 10) -> list[dict[str, Any]]:
    """What the modeling contract ranks for this user under exactly this version (seen items excluded)."""
    from apps.core.tenant_db import tenant_context
    from apps.modeling.artifacts import load_artifacts
    from apps.modeling.interest import user_interest
    from apps.modeling.selectors import served_knn
    from apps.profiles.selectors import user_state_and_seen

    with tenant_context(tenant_id):
        model = load_artifacts(tenant_id, version).model
        state, seen = user_state_and_seen(tenant_id, user)
        found = served_knn(
            tenant_id=tenant_id, version=version, vector=user_interest(model, state), k=k, exclude_pks=seen
        )
    return [{"id": ext, "score": round(score, 6)} for _, ext, score in found]


def test_a_known_user_gets_the_personal_strategy_of_the_active_version(api, trained):
    body = recommend(api, trained, user="u0", k=5)
    assert body["strategy"] == "personal"
    assert body["model_version"] == 2
    assert body["note"] is None
    assert body["items"] == _expected(trained.tenant.id, 2, "u0", k=5)
    # u0 only ever met category c0: the tower puts that category first, minus what u0 has seen
    assert len(body["items"]) == 5


def test_personal_rules_hold_category_and_seen_items(api, trained):
    body = recommend(api, trained, user="u1", k=30, category="c2")
    assert body["items"] and all(int(i[1:]) % 3 == 2 for i in ids(body))
    seen = recommend(api, trained, user="u1", k=30, exclude_seen="false")
    unseen = recommend(api, trained, user="u1", k=30)
    assert len(seen["items"]) == 30 and len(unseen["items"]) < 30
    assert set(ids(unseen)) < set(ids(seen))


def test_an_unknown_user_gets_the_dp_popularity_release(api, trained):
    from apps.modeling.selectors import popular_items

    body = recommend(api, trained, user="nobody-yet", k=5)
    assert body["strategy"] == "popular" and body["model_version"] is None and body["note"] is None
    expected = popular_items(tenant_id=trained.tenant.id, k=5)
    assert ids(body) == [ext for _, ext, _ in expected]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    only_c1 = recommend(api, trained, user="nobody-yet", k=5, category="c1")
    assert only_c1["items"] and all(int(i[1:]) % 3 == 1 for i in ids(only_c1))


def test_a_model_swap_under_load_gives_no_error_and_no_mixed_version_answer(api, trained):
    """Given threads hammering recommendations, when the active version flips between 1 and 2 again and
    again, then every answer is 200 and its items are exactly what its own model_version ranks."""
    from django.test import Client

    from apps.modeling.services import active_model_rollback

    tid = trained.tenant.id
    users = ["u0", "u1", "u2", "u5"]
    expected = {(v, u): _expected(tid, v, u) for v in (1, 2) for u in users}
    assert any(expected[(1, u)] != expected[(2, u)] for u in users), "the two versions must rank differently"
    answers: list[tuple[int, str, Any]] = []
    stop = threading.Event()

    def hammer(n: int) -> None:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {trained.key}")
        try:
            i = n
            while not stop.is_set():
                user = users[i % len(users)]
                response = client.get("/api/v1/recommendations", {"user": user})
                answers.append((response.status_code, user, response.json()))
                i += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(12):
            time.sleep(0.15)
            active_model_rollback(tenant_id=tid, actor="test")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert len(answers) > 40
    assert {status for status, _, _ in answers} == {200}
    versions = {body["model_version"] for _, _, body in answers}
    assert versions == {1, 2}, versions
    for _, user, body in answers:
        assert body["strategy"] == "personal"
        assert body["items"] == expected[(body["model_version"], user)], (user, body["model_version"])


def test_personal_recommendations_take_six_statements_in_four_round_trips(api, trained, settings):
    """Steady state (key, model pointer and weights cached): BEGIN with the RLS tenant (pipelined: one
    round trip), the user's state and seen items, the served k-NN's knobs and its scan (pipelined),
    COMMIT; no ORM."""

    settings.SOTTO = {**settings.SOTTO, "API_KEY_CACHE_TTL_S": 60.0, "MODELING_POINTER_TTL_S": 60.0}
    recommend(api, trained, user="u3")  # warm the caches
    for query in ({"user": "u3"}, {"user": "u3", "category": "c0"}):
        with CaptureRoundTrips(connection) as captured:
            body = recommend(api, trained, **query)
        statements = [" ".join(q["sql"].split()) for q in captured.captured_queries]
        assert len(statements) == 6, "\n".join(s[:90] for s in statements)
        assert statements[0] == "BEGIN" and statements[-1] == "COMMIT"
        assert "set_config('app.tenant_id'" in statements[1]
        assert "profiles_userstate" in statements[2] and "profiles_userevent" in statements[2]
        assert statements[3].startswith("SELECT set_config('hnsw.ef_search'")
        assert (
            "modeling_served_vector" in statements[4] and "$1" in statements[4]
        )  # bound server-side, prepared
        assert round_trips(captured) == 4
        assert body["strategy"] == "personal" and body["items"]
    with CaptureRoundTrips(connection) as captured:  # cold start: the popularity release instead of a scan
        body = recommend(api, trained, user="nobody-yet")
    assert round_trips(captured) <= 4 and body["items"]


def test_served_vectors_round_trip_exactly_through_pgvector_adapters(trained):
    """Given float32 vectors written to a version's leaf, when read back, then they are bit for bit the same."""
    import numpy as np

    from apps.core.tenant_db import tenant_context
    from apps.core.vector_adapters import adapt_vectors
    from apps.modeling import served

    tid = trained.tenant.id
    with tenant_context(tid), connection.cursor() as cursor:
        cursor.execute(
            "SELECT item_id FROM modeling_served_vector WHERE tenant_id = %s AND version = 2 "
            "ORDER BY item_id LIMIT 3",
            [tid],
        )
        pks = [int(r[0]) for r in cursor.fetchall()]
    vectors = np.random.default_rng(5).standard_normal((3, 24)).astype(np.float32)
    with tenant_context(tid):
        served.version_create(tenant_id=tid, version=99)
    try:
        with tenant_context(tid):
            assert served.vectors_upsert(tenant_id=tid, version=99, item_pks=pks, vectors=vectors) == 3
            with connection.cursor() as cursor:
                adapt_vectors(cursor)
                cursor.execute(
                    "SELECT item_id, embedding FROM modeling_served_vector WHERE tenant_id = %s "
                    "AND version = 99 ORDER BY item_id",
                    [tid],
                )
                got = cursor.fetchall()
        assert [pk for pk, _ in got] == pks
        assert all(np.array_equal(vec, vectors[i]) for i, (_, vec) in enumerate(got))
    finally:
        with tenant_context(tid):
            served.version_drop(tenant_id=tid, version=99)
    with pytest.raises(ValueError, match="NaN or infinity"):
        served.served_vector(np.array([1.0, np.inf]))

"""GET /api/v1/recommendations through HTTP: strategies, rules, diversity, real time, isolation, round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import connection

from tests.serving.conftest import CaptureRoundTrips, ids, new_user, rate, recommend, round_trips

pytestmark = pytest.mark.usefixtures("live_db")

# A child who loves animated films: Toy Story and Balto, and liked Jumanji.
KID = {"1": 5.0, "13": 4.5, "2": 4.0}


def test_an_unknown_user_gets_the_newest_items_and_a_note_when_there_is_no_release(api, shop):
    """Cold start (no model, no DP popularity release) is never an empty list: see test_cold_start.py."""
    body = recommend(api, shop.persona, user=new_user())
    assert body["strategy"] == "newest"
    assert body["model_version"] is None
    assert len(body["items"]) == 10 and set(ids(body)) <= set(shop.titles)
    assert "no DP popularity release" in body["note"]
    assert body["request_id"]


def test_a_user_with_history_gets_content_recommendations_before_any_model(api, shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    body = recommend(api, shop.persona, user=user, k=5)
    assert body["strategy"] == "content"
    assert body["model_version"] is None
    assert body["user"] == user
    assert len(body["items"]) == 5
    assert not set(ids(body)) & set(KID)  # exclude_seen is the default
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)


def test_the_content_ranking_is_the_cosine_to_the_users_history_mean(api, shop):
    """Given a user with one rated item, the top recommendation is that item's nearest neighbour by content."""
    from apps.catalog.selectors import similar_items

    user = new_user()
    rate(api, shop.persona, user, {"1": 4.0})
    body = recommend(api, shop.persona, user=user, k=3)
    nearest = similar_items(tenant_id=shop.tenant_id, external_id="1", k=3)
    assert ids(body) == [n["id"] for n in nearest]
    assert [i["score"] for i in body["items"]] == pytest.approx([n["score"] for n in nearest], abs=1e-5)


def test_exclude_seen_false_keeps_the_users_own_items(api, shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    body = recommend(api, shop.persona, user=user, k=10, exclude_seen="false")
    assert set(KID) & set(ids(body))
    assert ids(body)[0] in KID  # nothing is closer to a history mean than the history itself


def test_the_category_rule_keeps_only_that_category(api, shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    body = recommend(api, shop.persona, user=user, k=10, category="Crime")
    crime = {i for i, cats in shop.categories.items() if "Crime" in cats}
    assert ids(body)
    assert set(ids(body)) <= crime
    assert len(body["items"]) == min(10, len(crime - set(KID)))


def test_an_unknown_category_is_an_empty_list_not_an_error(api, shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    body = recommend(api, shop.persona, user=user, category="No Such Genre")
    assert body["items"] == []
    assert body["strategy"] == "content"


def test_unavailable_items_are_never_recommended(api, shop):
    """Given an item flipped to unavailable through the items API, it leaves every list; then it comes back."""
    user = new_user()
    rate(api, shop.persona, user, {"1": 5.0})
    before = ids(recommend(api, shop.persona, user=user, k=5))
    hidden = before[0]
    item = api.get(f"/api/v1/items/{hidden}", **shop.persona.auth).json()
    payload = {
        "id": hidden,
        "title": item["title"],
        "description": item["description"],
        "categories": item["categories"],
        "available": False,
    }
    try:
        assert (
            api.post("/api/v1/items", {"items": [payload]}, format="json", **shop.persona.auth).status_code
            == 200
        )
        after = ids(recommend(api, shop.persona, user=user, k=5))
        assert hidden not in after
        assert after[:4] == before[1:5]
    finally:
        payload["available"] = True
        api.post("/api/v1/items", {"items": [payload]}, format="json", **shop.persona.auth)
    assert ids(recommend(api, shop.persona, user=user, k=5)) == before


def _mean_pairwise_similarity(shop: Any, external_ids: list[str]) -> float:
    from apps.catalog.selectors import content_vectors

    vectors = content_vectors(shop.tenant_id, [shop.pks[i] for i in external_ids])
    matrix = np.stack([vectors[shop.pks[i]] for i in external_ids])
    sims = matrix @ matrix.T
    n = len(external_ids)
    return float((sims.sum() - n) / (n * (n - 1)))


def test_diversity_trades_relevance_for_variety_by_mmr(api, shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    plain = recommend(api, shop.persona, user=user, k=6)
    varied = recommend(api, shop.persona, user=user, k=6, diversity=0.9)
    assert len(varied["items"]) == 6
    assert ids(varied)[0] == ids(plain)[0]  # MMR's first pick is the most relevant item
    assert ids(varied) != ids(plain)
    assert _mean_pairwise_similarity(shop, ids(varied)) < _mean_pairwise_similarity(shop, ids(plain))
    # the score is still each item's relevance (cosine), so the plain list's scores dominate
    assert sum(i["score"] for i in varied["items"]) < sum(i["score"] for i in plain["items"])
    assert recommend(api, shop.persona, user=user, k=6, diversity=0)["items"] == plain["items"]


def test_an_event_accepted_with_201_is_reflected_by_the_very_next_request(api, shop):
    """Given a user with history, when they rate a recommended item, the next request drops it and
    every remaining score moves (the user vector moved)."""
    user = new_user()
    rate(api, shop.persona, user, KID)
    before = recommend(api, shop.persona, user=user, k=10)
    top = ids(before)[0]
    rate(api, shop.persona, user, {top: 1.0})
    after = recommend(api, shop.persona, user=user, k=10)
    assert top not in ids(after)
    old = {i["id"]: i["score"] for i in before["items"]}
    moved = [abs(i["score"] - old[i["id"]]) for i in after["items"] if i["id"] in old]
    assert moved and min(moved) > 1e-6


def test_a_tenant_sees_only_its_own_items_even_for_the_same_user_id(api, shop, other_shop):
    user = new_user()
    rate(api, shop.persona, user, KID)
    theirs_rated = next(iter(other_shop.titles))
    assert theirs_rated not in shop.titles
    rate(api, other_shop.persona, user, {theirs_rated: 4.0})
    mine = recommend(api, shop.persona, user=user, k=50, exclude_seen="false")
    theirs = recommend(api, other_shop.persona, user=user, k=50, exclude_seen="false")
    assert set(ids(mine)) <= set(shop.titles) and len(mine["items"]) == len(shop.titles)
    assert set(ids(theirs)) <= set(other_shop.titles) and len(theirs["items"]) == len(other_shop.titles)
    # B's user has one rating, so B's content ranking starts with that item; A's does not know it
    assert ids(theirs)[0] == theirs_rated


def test_recommendations_take_at_most_four_database_round_trips(api, shop, settings):
    """Steady state (API key and model pointer cached, as in production): BEGIN with the RLS tenant,
    the user's state and seen items, the k-NN (its knobs pipelined with the scan), COMMIT; MMR adds
    one vector read. An unknown user on this tenant (no DP popularity release) reads the release and
    then the newest items: one more."""
    # the tests' default API key cache TTL is 0 (revocation at once)
    settings.SOTTO = {**settings.SOTTO, "API_KEY_CACHE_TTL_S": 60.0, "MODELING_POINTER_TTL_S": 60.0}
    user = new_user()
    rate(api, shop.persona, user, KID)
    recommend(api, shop.persona, user=user)  # warm the key cache, the keyring and the model pointer
    for query, bound in (
        ({"user": user}, 4),
        ({"user": user, "category": "Comedy"}, 4),
        ({"user": user, "diversity": 0.5}, 5),
        ({"user": new_user()}, 5),
    ):
        recommend(api, shop.persona, **query)  # steady state for this very query (pointer, vectors' OID)
        with CaptureRoundTrips(connection) as captured:
            recommend(api, shop.persona, **query)
        statements = [" ".join(q["sql"].split())[:90] for q in captured.captured_queries]
        assert round_trips(captured) <= bound, "\n".join(statements)

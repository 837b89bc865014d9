"""Cold start through HTTP: a tenant with items but no trained model never gets an empty list.

Each test has its own fresh tenant whose items are posted through the items API and left pending
(no encoding worker, so no content vectors: the coldest catalogue). ``created_at`` is then set
explicitly, in an order unlike the insertion (pk) order, so "newest first" is really the
catalogue's creation time. The popularity release is stored with chosen noisy counts through the
modeling app's own store, so the expected order is exact.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone

from tests.serving.conftest import build_shop, ids, new_user, rate, recommend
from tests.support import TenantPersona, make_tenant

pytestmark = pytest.mark.usefixtures("live_db")

# external id -> (categories, available); created_at order (oldest first) is a, b, c, d, e, f
CATALOGUE = {
    "a": (["Drama"], True),
    "b": (["Comedy"], True),
    "c": (["Drama"], False),
    "d": (["Comedy"], True),
    "e": (["Drama"], True),
    "f": (["Drama"], True),
}
INSERT_ORDER = ["f", "a", "e", "b", "d", "c"]  # pk order differs from creation order
NEWEST_FIRST = ["f", "e", "d", "b", "a"]  # available only


@pytest.fixture(autouse=True)
def _no_encoding_worker() -> Iterator[None]:
    with mock.patch("apps.catalog.services.encoding_enqueue"):
        yield


def post_items(api: Any, persona: TenantPersona, items: dict[str, tuple[list[str], bool]]) -> None:
    for external_id, (categories, available) in items.items():  # one request each: distinct pks and times
        payload = {
            "id": external_id,
            "title": f"Item {external_id}",
            "description": "",
            "categories": categories,
            "available": available,
        }
        response = api.post("/api/v1/items", {"items": [payload]}, format="json", **persona.auth)
        assert response.status_code == 200, response.content


def set_created(persona: TenantPersona, oldest_first: list[str]) -> None:
    from apps.catalog.models import Item
    from apps.core.tenant_db import tenant_context

    base = timezone.now() - timedelta(days=30)
    with tenant_context(persona.tenant.id):
        for age, external_id in enumerate(oldest_first):
            Item.objects.filter(tenant_id=persona.tenant.id, external_id=external_id).update(
                created_at=base + timedelta(hours=age)
            )


def store_release(persona: TenantPersona, counts: dict[str, float]) -> None:
    """A DP popularity release with exactly these noisy counts (the modeling app's own store)."""
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.core.tenant_db import tenant_context
    from apps.modeling.models import LedgerEntry, ReleaseKind
    from apps.modeling.popularity_release import popularity_release_store

    tenant_id = int(persona.tenant.id)
    pks = item_pks_by_external_ids(tenant_id, list(counts))
    with tenant_context(tenant_id):
        entry = LedgerEntry.objects.create(
            tenant_id=tenant_id, kind=ReleaseKind.POPULARITY, epsilon=1.0, delta=1e-6, users=1, actor="test"
        )
        popularity_release_store(
            tenant_id=tenant_id,
            entry=entry,
            run=None,
            item_pks=np.array([pks[e] for e in counts]),
            counts=np.array(list(counts.values())),
            epsilon=1.0,
            delta=1e-6,
            sigma=1.0,
            cap=1,
            n_users=1,
        )


def privacy_rows(persona: TenantPersona) -> tuple[int, int]:
    from apps.core.tenant_db import tenant_context
    from apps.modeling.models import LedgerEntry, PopularityRelease

    with tenant_context(persona.tenant.id):
        return (
            LedgerEntry.objects.filter(tenant_id=persona.tenant.id).count(),
            PopularityRelease.objects.filter(tenant_id=persona.tenant.id).count(),
        )


@pytest.fixture
def cold(api: Any, live_db: None) -> TenantPersona:
    persona = make_tenant("cold")
    post_items(api, persona, {e: CATALOGUE[e] for e in INSERT_ORDER})
    set_created(persona, sorted(CATALOGUE))
    return persona


def test_no_model_and_no_release_answers_the_newest_available_items_at_no_privacy_cost(api, cold):
    body = recommend(api, cold, user=new_user())
    assert body["strategy"] == "newest"
    assert ids(body) == NEWEST_FIRST  # by created_at, not pk; the unavailable "c" is left out
    assert [i["score"] for i in body["items"]] == [0.0] * len(NEWEST_FIRST)
    assert body["model_version"] is None
    assert "no DP popularity release" in body["note"]
    assert privacy_rows(cold) == (0, 0)  # nothing was released (or charged) implicitly


def test_the_newest_fallback_respects_k_and_the_category(api, cold):
    assert ids(recommend(api, cold, user=new_user(), k=2)) == ["f", "e"]
    assert ids(recommend(api, cold, user=new_user(), category="Drama")) == ["f", "e", "a"]
    assert ids(recommend(api, cold, user=new_user(), category="Comedy", k=1)) == ["d"]
    unknown = recommend(api, cold, user=new_user(), category="No Such Genre")
    assert unknown["items"] == [] and unknown["note"] == "no available item passes the filters"
    varied = recommend(api, cold, user=new_user(), k=3, diversity=0.5)
    assert len(varied["items"]) == 3 and set(ids(varied)) <= set(NEWEST_FIRST)


def test_the_newest_fallback_drops_the_users_seen_items_unless_asked_not_to(api, cold):
    user = new_user()
    rate(api, cold, user, {"f": 5.0, "d": 3.0})  # pending items: stored, not folded, but seen
    body = recommend(api, cold, user=user)
    assert body["strategy"] == "newest"
    assert ids(body) == ["e", "b", "a"]
    assert ids(recommend(api, cold, user=user, exclude_seen="false")) == NEWEST_FIRST


def test_a_popularity_release_answers_first_and_newest_items_top_it_up_without_duplicates(api, cold):
    store_release(cold, {"b": 9.0, "f": 4.0, "c": 7.0})  # "c" is unavailable, "f" is also the newest
    body = recommend(api, cold, user=new_user())
    assert body["strategy"] == "popular"
    assert ids(body) == ["b", "f", "e", "d", "a"]
    assert [i["score"] for i in body["items"]] == [9.0, 4.0, 0.0, 0.0, 0.0]
    assert "newest" in body["note"]
    full = recommend(api, cold, user=new_user(), k=2)
    assert ids(full) == ["b", "f"] and full["strategy"] == "popular" and full["note"] is None
    comedy = recommend(api, cold, user=new_user(), category="Comedy")
    assert ids(comedy) == ["b", "d"] and comedy["strategy"] == "popular"
    assert privacy_rows(cold) == (1, 1)  # only the release the test stored


def test_a_release_with_no_item_passing_the_filters_falls_back_to_the_newest(api, cold):
    store_release(cold, {"b": 9.0})
    body = recommend(api, cold, user=new_user(), category="Drama")
    assert body["strategy"] == "newest"
    assert ids(body) == ["f", "e", "a"]
    assert "newest" in body["note"]


def test_an_empty_catalogue_answers_an_empty_list_with_200(api, live_db):
    empty = make_tenant("empty")
    body = recommend(api, empty, user=new_user())
    assert body["items"] == []
    assert body["strategy"] == "popular" and body["note"] == "no available item passes the filters"
    post_items(api, empty, {"x": (["Drama"], False)})  # only an unavailable item: still nothing to serve
    assert recommend(api, empty, user=new_user())["items"] == []


def test_a_user_whose_content_ranking_is_exhausted_gets_the_newest_unseen_items(api, live_db):
    """Given a user who rated every encoded item, when new (not yet encoded) items arrive, the
    content ranking finds nothing and the newest fallback answers with them."""
    shop = build_shop("exhausted", slice(0, 3))
    user = new_user()
    rate(api, shop.persona, user, dict.fromkeys(shop.titles, 4.0))
    before = recommend(api, shop.persona, user=user)
    assert before["items"] == [] and before["strategy"] == "content"
    post_items(api, shop.persona, {"new-1": (["Drama"], True), "new-2": (["Comedy"], True)})
    set_created(shop.persona, ["new-1", "new-2"])
    after = recommend(api, shop.persona, user=user)
    assert after["strategy"] == "newest"
    assert ids(after) == ["new-2", "new-1"]

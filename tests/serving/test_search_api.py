"""GET /api/v1/search through HTTP: English, Chinese and mixed queries, personalisation, isolation, round trips."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import connection

from tests.serving.conftest import CaptureRoundTrips, ids, new_user, rate, round_trips, search

pytestmark = pytest.mark.usefixtures("live_db")


def test_an_english_query_finds_the_movie_it_names(api, shop):
    body = search(api, shop.persona, q="toy story", k=5)
    assert ids(body)[0] == "1"
    assert body["personalised"] is False and body["user"] is None and body["note"] is None
    scores = [i["score"] for i in body["items"]]
    assert len(scores) == 5 and scores == sorted(scores, reverse=True)
    assert body["request_id"]


def test_a_query_about_a_theme_finds_items_of_that_theme(api, shop):
    body = search(api, shop.persona, q="animated children's adventure", k=3)
    assert set(ids(body)) & {"1", "13"}  # Toy Story, Balto: the two animated films of the catalogue


def test_a_mixed_chinese_and_english_query_works_through_its_english_words(api, shop):
    body = search(api, shop.persona, q="Toy Story 玩具总动员", k=3)
    assert ids(body)[0] == "1"
    assert body["note"] is None


def test_a_chinese_query_answers_with_a_note_on_its_quality(api, shop):
    body = search(api, shop.persona, q="玩具总动员", k=5)
    assert len(body["items"]) == 5
    assert "English-trained" in body["note"]


def test_with_a_user_the_score_blends_query_and_interest_similarity(api, shop):
    """Given a crime-loving user, personalised search scores (1-a)·cos(q, item) + a·cos(u, item), a = 0.3."""
    from apps.catalog.selectors import content_vectors
    from apps.profiles.selectors import user_state
    from apps.serving.query_encoding import query_vector
    from apps.serving.ranking import content_interest

    user = new_user()
    rate(api, shop.persona, user, {"6": 5.0, "16": 5.0, "23": 4.5})  # Heat, Casino, Assassins
    plain = search(api, shop.persona, q="a funny family movie", k=10)
    mixed = search(api, shop.persona, q="a funny family movie", k=10, user=user)
    assert mixed["personalised"] is True and mixed["user_weight"] == pytest.approx(0.3)
    assert [i["score"] for i in mixed["items"]] != [i["score"] for i in plain["items"]]

    q = query_vector(shop.tenant_id, "a funny family movie")
    u = content_interest(user_state(shop.tenant_id, user))
    vectors = content_vectors(shop.tenant_id, shop.pks.values())
    expected = {
        ext: 0.7 * float(vectors[pk] @ q) + 0.3 * float(vectors[pk] @ u) for ext, pk in shop.pks.items()
    }
    best = sorted(expected, key=lambda e: -expected[e])[:10]
    assert ids(mixed)[:3] == best[:3]
    for item in mixed["items"]:
        assert item["score"] == pytest.approx(expected[item["id"]], abs=1e-4)
    crime = {e for e, cats in shop.categories.items() if "Crime" in cats}
    assert len(set(ids(mixed)) & crime) > len(set(ids(plain)) & crime)


def test_an_unknown_user_leaves_the_search_unpersonalised(api, shop):
    plain = search(api, shop.persona, q="toy story", k=5)
    body = search(api, shop.persona, q="toy story", k=5, user=new_user())
    assert body["personalised"] is False and body["user_weight"] == 0.0
    assert body["items"] == plain["items"]


def test_search_sees_only_the_tenants_own_items(api, shop, other_shop):
    theirs = search(api, other_shop.persona, q="toy story", k=20)
    assert set(ids(theirs)) <= set(other_shop.titles)
    assert len(theirs["items"]) == len(other_shop.titles)
    mine = search(api, shop.persona, q=next(iter(other_shop.titles.values())), k=50)
    assert set(ids(mine)) <= set(shop.titles)


def test_the_query_vector_is_computed_once_then_served_from_the_lru(api, shop):
    from apps.serving.query_encoding import _encoder

    text = f"space adventure {new_user()}"
    search(api, shop.persona, q=text)
    encoder = _encoder(shop.tenant_id)
    size = encoder.query_cache_len
    cached = encoder.encode_query(text)
    search(api, shop.persona, q=f"  {text} ")  # same stripped key
    assert encoder.query_cache_len == size
    assert encoder.encode_query(text) is cached
    assert np.isclose(float(np.linalg.norm(cached)), 1.0, atol=1e-5)


def test_search_takes_at_most_four_database_round_trips(api, shop, settings):
    """BEGIN with the RLS tenant, (the user's state,) the k-NN with its knobs pipelined, COMMIT."""
    settings.SOTTO = {**settings.SOTTO, "API_KEY_CACHE_TTL_S": 60.0}
    user = new_user()
    rate(api, shop.persona, user, {"1": 4.0})
    search(api, shop.persona, q="warm up", user=user)
    for query, bound in (({"q": "heist"}, 3), ({"q": "heist", "user": user}, 4)):
        with CaptureRoundTrips(connection) as captured:
            search(api, shop.persona, **query)
        statements = [" ".join(q["sql"].split())[:90] for q in captured.captured_queries]
        assert round_trips(captured) <= bound, "\n".join(statements)


def test_the_query_encoder_follows_the_items_precision_with_one_thread(api, shop, settings, monkeypatch):
    """Given the int8 setting, the web process asks the catalogue for the int8 encoder (one intra-op
    thread, the configured LRU size), so query vectors match item vectors."""
    from apps.serving import query_encoding

    calls: list[tuple[Any, ...]] = []

    class Fake:
        def encode_query(self, text: str) -> np.ndarray:
            vec = np.zeros(384, dtype=np.float32)
            vec[0] = 1.0
            return vec

    def fake_get_encoder(path: Any, precision: str, **kwargs: Any) -> Fake:
        calls.append((path, precision, kwargs))
        return Fake()

    settings.SOTTO = {**settings.SOTTO, "ENCODER_PRECISION": "int8"}
    monkeypatch.setattr(query_encoding, "get_encoder", fake_get_encoder)
    query_encoding.forget_encoders()
    try:
        assert len(search(api, shop.persona, q="anything", k=3)["items"]) == 3
    finally:
        query_encoding.forget_encoders()
    assert calls == [(None, "int8", {"num_threads": 1, "query_cache_size": 4096})]

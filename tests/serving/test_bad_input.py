"""Bad input to the serving endpoints: always a clear 4xx with the error shape, never a 500."""

from __future__ import annotations

import pytest

from tests.support import make_tenant

pytestmark = pytest.mark.usefixtures("live_db")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "user"),
        ({"user": "u1", "k": "0"}, "k"),
        ({"user": "u1", "k": "101"}, "k"),
        ({"user": "u1", "k": "ten"}, "k"),
        ({"user": "u1", "k": "-5"}, "k"),
        ({"user": "u1", "diversity": "-0.1"}, "diversity"),
        ({"user": "u1", "diversity": "1.5"}, "diversity"),
        ({"user": "u1", "diversity": "nan"}, "diversity"),
        ({"user": "u1", "diversity": "inf"}, "diversity"),
        ({"user": "u1", "diversity": "lots"}, "diversity"),
        ({"user": "u1", "exclude_seen": "maybe"}, "exclude_seen"),
        ({"user": "u1", "category": "Com\x00edy"}, "category"),
        ({"user": "bad\x00id"}, "user"),
        ({"user": "x" * 300}, "user"),
    ],
)
def test_recommendations_reject_bad_parameters_with_a_400(api, tenant_a, query, field):
    response = api.get("/api/v1/recommendations", query, **tenant_a.auth)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in error["message"] or field in error["details"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({}, "q"),
        ({"q": "   "}, "q"),
        ({"q": "x" * 513}, "q"),
        ({"q": "toy\x00story"}, "q"),
        ({"q": "toy", "k": "0"}, "k"),
        ({"q": "toy", "k": "1000"}, "k"),
        ({"q": "toy", "user": "bad\x01id"}, "user"),
    ],
)
def test_search_rejects_bad_parameters_with_a_400(api, tenant_a, query, field):
    response = api.get("/api/v1/search", query, **tenant_a.auth)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["message"] or field in error["details"]


def test_the_boundaries_themselves_are_accepted(api, tenant_a):
    for query in (
        {"user": "u1", "k": "1"},
        {"user": "u1", "k": "100", "diversity": "1"},
        {"user": "u1", "diversity": "0", "exclude_seen": "false"},
    ):
        assert api.get("/api/v1/recommendations", query, **tenant_a.auth).status_code == 200


def test_similar_items_of_an_unknown_item_is_a_404(api, tenant_a):
    response = api.get("/api/v1/items/no-such-item/similar", **tenant_a.auth)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_serving_needs_an_api_key_with_the_serve_scope(api, anon, tenant_a):
    assert anon.get("/api/v1/recommendations", {"user": "u1"}).status_code == 401
    assert anon.get("/api/v1/search", {"q": "toy"}).status_code == 401
    ingest_only = make_tenant("ingest", scopes=["ingest"])
    assert api.get("/api/v1/recommendations", {"user": "u1"}, **ingest_only.auth).status_code == 403
    assert api.get("/api/v1/search", {"q": "toy"}, **ingest_only.auth).status_code == 403

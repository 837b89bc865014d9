"""Items API over real HTTP handling and a real database (no worker needed: encoding stays queued)."""

from apps.catalog.models import EncodingStatus, Item
from apps.core.tenant_db import tenant_context
from tests.catalog.support import catalog_status, item, post_items
from tests.support import make_tenant


def test_it_upserts_items_and_returns_them_with_their_encoding_state(tenant_a, api):
    response = post_items(
        api,
        tenant_a,
        [
            item(
                "m1",
                "Toy Story (1995)",
                description="toys come alive",
                categories=["Animation", "Comedy"],
                attributes={"year": 1995, "rated": "G"},
            ),
            item("m2", "Heat (1995)", available=False),
        ],
    )
    assert response.status_code == 200, response.content
    assert response.json() == {
        "received": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "queued_for_encoding": 2,
    }

    body = api.get("/api/v1/items/m1", **tenant_a.auth).json()
    assert body["id"] == "m1"
    assert body["title"] == "Toy Story (1995)"
    assert body["categories"] == ["Animation", "Comedy"]
    assert body["attributes"] == {"year": 1995, "rated": "G"}
    assert body["available"] is True
    assert body["encoding"]["status"] in {"pending", "ready"}
    assert set(body["encoding"]) >= {"status", "model", "updated_at", "truncated"}
    assert api.get("/api/v1/items/m2", **tenant_a.auth).json()["available"] is False


def test_resending_identical_content_queues_no_encoding(tenant_a, api):
    items = [item("a", "Alpha", description="first"), item("b", "Beta")]
    assert post_items(api, tenant_a, items).json()["queued_for_encoding"] == 2
    again = post_items(api, tenant_a, items).json()
    assert again == {"received": 2, "created": 0, "updated": 0, "unchanged": 2, "queued_for_encoding": 0}


def test_changing_only_attributes_updates_without_reencoding_but_new_text_reencodes(tenant_a, api):
    post_items(api, tenant_a, [item("a", "Alpha", attributes={"price": 1})])
    with tenant_context(tenant_a.tenant.id):
        Item.objects.filter(external_id="a").update(
            encoding_status=EncodingStatus.READY, encoded_hash=Item.objects.get(external_id="a").content_hash
        )
    attrs_only = post_items(
        api, tenant_a, [item("a", "Alpha", attributes={"price": 2}, available=False)]
    ).json()
    assert attrs_only["updated"] == 1 and attrs_only["queued_for_encoding"] == 0
    assert api.get("/api/v1/items/a", **tenant_a.auth).json()["encoding"]["status"] == "ready"

    new_text = post_items(api, tenant_a, [item("a", "Alpha", description="now with words")]).json()
    assert new_text["updated"] == 1 and new_text["queued_for_encoding"] == 1
    assert api.get("/api/v1/items/a", **tenant_a.auth).json()["encoding"]["status"] == "pending"


def test_a_bad_batch_writes_nothing(tenant_a, api):
    response = post_items(api, tenant_a, [item("ok", "Fine"), {"id": "bad", "categories": "Action"}])
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["details"]["items"][0]["index"] == 1
    assert set(error["details"]["items"][0]["errors"]) == {"title", "categories"}
    assert api.get("/api/v1/items/ok", **tenant_a.auth).status_code == 404


def test_more_than_1000_items_is_413_and_writes_nothing(tenant_a, api):
    response = post_items(api, tenant_a, [item(str(i), "t") for i in range(1001)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert catalog_status(api, tenant_a)["items"] == 0


def test_malformed_bodies_are_400_not_500(tenant_a, api):
    body: object
    for body in ({"items": "x"}, {"items": []}, {"things": []}, [1, 2], {"items": [None]}):
        response = api.post("/api/v1/items", body, format="json", **tenant_a.auth)
        assert response.status_code == 400, (body, response.content)
        assert response.json()["error"]["code"] == "invalid"
    raw = api.post("/api/v1/items", "{not json", content_type="application/json", **tenant_a.auth)
    assert raw.status_code == 400


def test_delete_removes_the_item_and_a_second_delete_is_404(tenant_a, api):
    post_items(api, tenant_a, [item("gone", "Gone")])
    assert api.delete("/api/v1/items/gone", **tenant_a.auth).status_code == 204
    assert api.get("/api/v1/items/gone", **tenant_a.auth).status_code == 404
    assert api.delete("/api/v1/items/gone", **tenant_a.auth).status_code == 404


def test_ids_with_slashes_and_spaces_round_trip(tenant_a, api):
    post_items(api, tenant_a, [item("sku/12 b", "Slash")])
    assert api.get("/api/v1/items/sku/12%20b", **tenant_a.auth).json()["id"] == "sku/12 b"


def test_listing_is_paginated_with_a_cursor(tenant_a, api):
    post_items(
        api,
        tenant_a,
        [item(f"i{n:02d}", f"Item {n}", categories=["even" if n % 2 == 0 else "odd"]) for n in range(7)],
    )
    seen, cursor = [], None
    while True:
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/items", query, **tenant_a.auth).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"i{n:02d}" for n in range(7)]
    even = api.get("/api/v1/items", {"category": "even"}, **tenant_a.auth).json()["items"]
    assert [i["id"] for i in even] == ["i00", "i02", "i04", "i06"]
    assert api.get("/api/v1/items", {"limit": 0}, **tenant_a.auth).status_code == 400
    assert api.get("/api/v1/items", {"status": "done"}, **tenant_a.auth).status_code == 400


def test_status_counts_the_tenants_items(tenant_a, api):
    post_items(api, tenant_a, [item("a", "A"), item("b", "B"), item("c", "C")])
    counts = catalog_status(api, tenant_a)
    assert counts["items"] == 3
    assert counts["pending"] + counts["ready"] + counts["failed"] == 3


def test_scopes_ingest_writes_and_serve_reads(live_db, api):
    reader = make_tenant("reader", scopes=["serve"])
    writer = make_tenant("writer", scopes=["ingest"])
    assert post_items(api, reader, [item("x", "X")]).status_code == 403
    assert post_items(api, writer, [item("x", "X")]).status_code == 200
    assert api.get("/api/v1/items/x", **writer.auth).status_code == 403
    assert api.delete("/api/v1/items/x", **writer.auth).status_code == 204
    assert api.delete("/api/v1/items/x", **reader.auth).status_code == 403
    assert api.get("/api/v1/catalog/status", **reader.auth).status_code == 200


def test_another_tenants_item_answers_exactly_like_a_missing_one(tenant_a, tenant_b, api):
    post_items(api, tenant_a, [item("secret", "A's item")])
    for path in ("/api/v1/items/{}", "/api/v1/items/{}/similar"):
        theirs = api.get(path.format("secret"), **tenant_b.auth)
        post_items(api, tenant_b, [])  # no-op request between, same client
        missing = api.get(path.format("nothere"), **tenant_b.auth)
        assert theirs.status_code == missing.status_code == 404
        assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
        assert theirs.json()["error"]["message"].replace("secret", "X") == missing.json()["error"][
            "message"
        ].replace("nothere", "X")
    assert api.delete("/api/v1/items/secret", **tenant_b.auth).status_code == 404
    assert api.get("/api/v1/items/secret", **tenant_a.auth).status_code == 200
    assert api.get("/api/v1/items", **tenant_b.auth).json()["items"] == []


def test_unauthenticated_requests_are_401(live_db, anon):
    assert anon.get("/api/v1/items").status_code == 401
    assert anon.get("/api/v1/items/x/similar").status_code == 401

"""End to end through the real broker and a real Celery worker: upsert → encode → similar items."""

import csv
from pathlib import Path

import pytest
from django.core.management import call_command

from apps.catalog.selectors import content_vectors, item_pks_by_external_ids, knn_content
from tests.catalog.support import item, post_items, wait_encoded

pytestmark = pytest.mark.worker

DATASET = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small"
TOY_STORIES = {"1": "Toy Story (1995)", "3114": "Toy Story 2 (1999)", "78499": "Toy Story 3 (2010)"}


def _similar(api, persona, external_id, **query):
    return api.get(f"/api/v1/items/{external_id}/similar", query, **persona.auth)


def test_a_tenant_with_five_items_gets_k_results_from_its_own_partition(
    tenant_a, tenant_b, api, celery_worker_proc
):
    # Given: tenant A has 5 items, tenant B has 20 items with very similar titles
    a_items = [item(f"a{n}", f"Kitchen knife model {n}", categories=["kitchen"]) for n in range(5)]
    b_items = [item(f"b{n}", f"Kitchen knife model {n} deluxe", categories=["kitchen"]) for n in range(20)]
    assert post_items(api, tenant_a, a_items).status_code == 200
    assert post_items(api, tenant_b, b_items).status_code == 200
    wait_encoded(api, tenant_a, 5, celery_worker_proc)
    wait_encoded(api, tenant_b, 20, celery_worker_proc)

    # When: A asks for k=4 similar to one of its items
    body = _similar(api, tenant_a, "a0", k=4).json()

    # Then: exactly its 4 other items, best first, scores in (0, 1]
    assert sorted(i["id"] for i in body["items"]) == ["a1", "a2", "a3", "a4"]
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1.0001 for s in scores)
    # and asking for more than it has returns what it has, never another tenant's items
    assert sorted(i["id"] for i in _similar(api, tenant_a, "a0", k=100).json()["items"]) == [
        "a1",
        "a2",
        "a3",
        "a4",
    ]


def test_tenant_b_similar_items_never_include_tenant_a_items(tenant_a, tenant_b, api, celery_worker_proc):
    # Same ids and same titles in both tenants: only the tenant's own rows may come back.
    shared = [item(f"m{n}", f"Star Voyage part {n}", categories=["scifi"]) for n in range(8)]
    post_items(api, tenant_a, [*shared, item("only-a", "Star Voyage part 9")])
    post_items(api, tenant_b, shared[:3])
    wait_encoded(api, tenant_a, 9, celery_worker_proc)
    wait_encoded(api, tenant_b, 3, celery_worker_proc)

    body = _similar(api, tenant_b, "m0", k=100).json()
    assert sorted(i["id"] for i in body["items"]) == ["m1", "m2"]
    assert _similar(api, tenant_b, "only-a").status_code == 404
    # the selector other apps use is scoped the same way
    b_pks = set(item_pks_by_external_ids(tenant_b.tenant.id, ["m0", "m1", "m2"]).values())
    a_vec = next(
        iter(
            content_vectors(
                tenant_a.tenant.id, item_pks_by_external_ids(tenant_a.tenant.id, ["m0"]).values()
            ).values()
        )
    )
    assert {pk for pk, _, _ in knn_content(tenant_b.tenant.id, a_vec, 50)} == b_pks
    assert (
        content_vectors(tenant_b.tenant.id, item_pks_by_external_ids(tenant_a.tenant.id, ["m0"]).values())
        == {}
    )


def test_similar_validates_k_and_filters_by_availability_and_category(tenant_a, api, celery_worker_proc):
    post_items(
        api,
        tenant_a,
        [
            item("p0", "Red running shoes", categories=["shoes"]),
            item("p1", "Blue running shoes", categories=["shoes"]),
            item("p2", "Green running shoes", categories=["shoes"], available=False),
            item("p3", "Running socks", categories=["socks"]),
        ],
    )
    wait_encoded(api, tenant_a, 4, celery_worker_proc)
    for bad in ("0", "101", "x", "-1"):
        response = _similar(api, tenant_a, "p0", k=bad)
        assert response.status_code == 400, bad
        assert response.json()["error"]["code"] == "invalid"
    assert [i["id"] for i in _similar(api, tenant_a, "p0", k=10).json()["items"]] == ["p1", "p3"]
    assert [i["id"] for i in _similar(api, tenant_a, "p0", k=10, category="shoes").json()["items"]] == ["p1"]
    # making p2 available again reaches the vector's filter column at once, without re-encoding
    assert (
        post_items(api, tenant_a, [item("p2", "Green running shoes", categories=["shoes"])]).json()[
            "queued_for_encoding"
        ]
        == 0
    )
    assert "p2" in [i["id"] for i in _similar(api, tenant_a, "p0", k=10).json()["items"]]
    body = api.get("/api/v1/items/p0", **tenant_a.auth).json()
    assert body["encoding"]["status"] == "ready"
    assert body["encoding"]["model"].startswith("all-MiniLM-L6-v2/")
    assert body["encoding"]["truncated"] is False and body["encoding"]["updated_at"]


def test_deleting_an_item_removes_its_vector_from_similar_results(tenant_a, api, celery_worker_proc):
    post_items(api, tenant_a, [item(f"d{n}", f"Desk lamp {n}") for n in range(3)])
    wait_encoded(api, tenant_a, 3, celery_worker_proc)
    pk = item_pks_by_external_ids(tenant_a.tenant.id, ["d1"])["d1"]
    assert api.delete("/api/v1/items/d1", **tenant_a.auth).status_code == 204
    assert content_vectors(tenant_a.tenant.id, [pk]) == {}
    assert [i["id"] for i in _similar(api, tenant_a, "d0").json()["items"]] == ["d2"]


def _movielens_subset(target: Path, n_movies: int = 40) -> None:
    """The three Toy Story films plus the first other movies of ml-latest-small, with their tags."""
    target.mkdir()
    with (DATASET / "movies.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    chosen = [r for r in rows if r["movieId"] in TOY_STORIES]
    chosen += [r for r in rows if r["movieId"] not in TOY_STORIES][: n_movies - len(chosen)]
    ids = {r["movieId"] for r in chosen}
    with (target / "movies.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["movieId", "title", "genres"])
        writer.writeheader()
        writer.writerows(chosen)
    with (
        (DATASET / "tags.csv").open(encoding="utf-8", newline="") as src,
        (target / "tags.csv").open("w", encoding="utf-8", newline="") as dst,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(r for r in reader if r["movieId"] in ids)


def test_toy_story_lists_another_toy_story_among_its_ten_most_similar(
    tenant_a, api, celery_worker_proc, tmp_path
):
    subset = tmp_path / "ml-subset"
    _movielens_subset(subset)
    call_command(
        "import_movielens",
        str(subset),
        "--tenant",
        tenant_a.slug,
        "--no-ratings",
        "--wait",
        "--wait-timeout",
        "240",
        "--no-progress",
    )
    status = api.get("/api/v1/catalog/status", **tenant_a.auth).json()
    assert status["items"] == 40 and status["ready"] == 40, status

    toy = api.get("/api/v1/items/1", **tenant_a.auth).json()
    assert toy["title"] == "Toy Story (1995)"
    assert "Animation" in toy["categories"] and toy["description"]  # genres and tags made it in
    top10 = [i["id"] for i in _similar(api, tenant_a, "1", k=10).json()["items"]]
    assert "1" not in top10
    assert {"3114", "78499"} & set(top10), top10

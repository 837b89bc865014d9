"""k-NN over a tenant partition with synthetic vectors: filters, iterative scans, the index in use."""

from typing import Any

import numpy as np
import pytest
from django.db import connection

from apps.catalog.models import EncodingStatus, Item
from apps.catalog.partitions import vector_partition_analyze
from apps.catalog.selectors import content_vectors, item_pks_by_external_ids, knn_content
from apps.catalog.vectors import VectorRow, vectors_exact, vectors_write
from apps.core.tenant_db import tenant_context
from tests.support import make_tenant

N = 1500
RARE_EVERY = 50  # 2 % of the items are in category "rare"


@pytest.fixture(scope="module")
def synthetic(django_db_setup, django_db_blocker):
    """A tenant with N items whose vectors are random unit vectors (seeded); built once per module."""
    with django_db_blocker.unblock():
        yield _build()


def _build():
    tid = make_tenant("knn").tenant.id
    raw: list[dict[str, Any]] = [
        {
            "id": str(i),
            "title": f"item {i}",
            "categories": ["rare"] if i % RARE_EVERY == 0 else ["common"],
            "available": i % 7 != 0,
        }
        for i in range(N)
    ]
    # Rows made directly (as ready), not through items_upsert: no encode task may race the synthetic vectors.
    with tenant_context(tid):
        Item.objects.bulk_create(
            [
                Item(
                    tenant_id=tid,
                    external_id=r["id"],
                    title=r["title"],
                    categories=r["categories"],
                    available=r["available"],
                    content_hash="0" * 64,
                    encoded_hash="0" * 64,
                    encoding_status=EncodingStatus.READY,
                )
                for r in raw
            ]
        )
    pks = item_pks_by_external_ids(tid, [r["id"] for r in raw])
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((N, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = [
        VectorRow(
            item_pk=pks[r["id"]],
            external_id=r["id"],
            vector=vectors[i],
            available=r["available"],
            categories=r["categories"],
            model="synthetic",
            content_hash="0" * 64,
        )
        for i, r in enumerate(raw)
    ]
    with tenant_context(tid):
        vectors_write(tenant_id=tid, rows=rows)
        vector_partition_analyze(tid)
    return tid, pks, vectors


def test_vectors_round_trip_exactly(live_db, synthetic):
    tid, pks, vectors = synthetic
    got = content_vectors(tid, [pks["3"], pks["4"]])
    assert np.array_equal(got[pks["3"]], vectors[3]) and np.array_equal(got[pks["4"]], vectors[4])


def test_the_query_uses_the_partitions_hnsw_index(live_db, synthetic):
    tid, _, vectors = synthetic
    literal = "[" + ",".join(repr(x) for x in vectors[0].tolist()) + "]"
    with tenant_context(tid), connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN SELECT item_id FROM catalog_itemvector WHERE tenant_id = %s AND available "
            "ORDER BY embedding <=> %s::vector LIMIT 10",
            [tid, literal],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"catalog_itemvector_t{tid}_hnsw" in plan, plan


def test_a_rare_category_still_gets_k_results_thanks_to_iterative_scans(live_db, synthetic, settings):
    tid, _pks, vectors = synthetic
    settings.SOTTO = {**settings.SOTTO, "CATALOG_HNSW_EF_SEARCH": 10}  # the graph walk alone would find ~0
    found = knn_content(tid, vectors[1], 10, category="rare", available_only=False)
    assert len(found) == 10
    assert all(int(ext) % RARE_EVERY == 0 for _, ext, _ in found)
    scores = [s for _, _, s in found]
    assert scores == sorted(scores, reverse=True)


def test_exclusions_and_availability_are_honoured(live_db, synthetic):
    tid, pks, vectors = synthetic
    first = knn_content(tid, vectors[1], 5, available_only=False)
    assert first[0][1] == "1" and first[0][2] == pytest.approx(1.0, abs=1e-5)
    without = knn_content(tid, vectors[1], 5, exclude_pks=[pks["1"]], available_only=False)
    assert "1" not in [ext for _, ext, _ in without] and len(without) == 5
    available = knn_content(tid, vectors[1], 50)
    assert len(available) == 50 and all(int(ext) % 7 != 0 for _, ext, _ in available)


def test_hnsw_recall_against_exact_search_is_high(live_db, synthetic):
    tid, _, vectors = synthetic
    rng = np.random.default_rng(11)
    recalls = []
    with tenant_context(tid):
        for q in rng.integers(0, N, size=20):
            query = vectors[q] + 0.5 * rng.standard_normal(384).astype(np.float32) / np.sqrt(384)
            exact = {n.item_pk for n in vectors_exact(tenant_id=tid, vector=query, k=10)}
            approx = {pk for pk, _, _ in knn_content(tid, query, 10, available_only=False)}
            recalls.append(len(exact & approx) / 10)
    assert float(np.mean(recalls)) >= 0.95

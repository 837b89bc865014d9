"""Vectors through pgvector's own psycopg adapters: exact round trips, validation, no leak to other cursors,
and the similar-items scan that finds its own anchor in the same statement."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import ProgrammingError, connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import EncodingStatus, Item
from apps.catalog.partitions import vector_partition_analyze
from apps.catalog.selectors import item_pks_by_external_ids, similar_items
from apps.catalog.vectors import (
    VectorRow,
    content_vector,
    vectors_fetch,
    vectors_knn,
    vectors_knn_of_item,
    vectors_write,
)
from apps.core.errors import Conflict, NotFound
from apps.core.tenant_db import tenant_context
from apps.core.vector_adapters import adapt_vectors
from tests.support import make_tenant

N = 300


@pytest.fixture(scope="module")
def catalogue(django_db_setup: None, django_db_blocker: Any) -> Any:
    """N ready items with seeded unit vectors (every 7th unavailable, every 10th in "tenth"), and one
    item ("bare") that has no content vector yet."""
    with django_db_blocker.unblock():
        tid = make_tenant("vecproto").tenant.id
        with tenant_context(tid):
            Item.objects.bulk_create(
                [
                    Item(
                        tenant_id=tid,
                        external_id=f"v{i}",
                        title=f"item {i}",
                        available=i % 7 != 0,
                        categories=["tenth"] if i % 10 == 0 else ["rest"],
                        content_hash="0" * 64,
                        encoded_hash="0" * 64,
                        encoding_status=EncodingStatus.READY,
                    )
                    for i in range(N)
                ]
            )
            Item.objects.create(
                tenant_id=tid,
                external_id="bare",
                title="no vector yet",
                content_hash="1" * 64,
                encoding_status=EncodingStatus.PENDING,
            )
        pks = item_pks_by_external_ids(tid, [f"v{i}" for i in range(N)])
        rng = np.random.default_rng(17)
        vectors = rng.standard_normal((N, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with tenant_context(tid):
            vectors_write(
                tenant_id=tid,
                rows=[
                    VectorRow(
                        item_pk=pks[f"v{i}"],
                        external_id=f"v{i}",
                        vector=vectors[i],
                        available=i % 7 != 0,
                        categories=["tenth"] if i % 10 == 0 else ["rest"],
                        model="synthetic",
                        content_hash="0" * 64,
                    )
                    for i in range(N)
                ],
            )
            vector_partition_analyze(tid)
        yield tid, pks, vectors


def test_vectors_round_trip_bit_for_bit_as_float32_arrays(live_db, catalogue):
    tid, pks, vectors = catalogue
    with tenant_context(tid):
        got = vectors_fetch(tenant_id=tid, item_pks=[pks["v1"], pks["v2"]])
    assert got[pks["v1"]].dtype == np.float32
    assert np.array_equal(got[pks["v1"]], vectors[1]) and np.array_equal(got[pks["v2"]], vectors[2])


def test_a_vector_travels_as_text_on_django_cursors_and_as_binary_on_server_side_ones(live_db, catalogue):
    """Given the same float32 vector, when it goes through pgvector's text dumper (Django's client-side
    binding) and its binary dumper (a prepared cursor), then both arrive exactly."""
    import psycopg

    _, _, vectors = catalogue
    with transaction.atomic():
        with connection.cursor() as cursor:
            adapt_vectors(cursor)
            cursor.execute("SELECT %s::vector", [vectors[7]])
            as_text = cursor.fetchone()[0]
        raw = adapt_vectors(psycopg.Cursor(connection.connection))
        raw.execute("SELECT %b::vector", [vectors[7]], binary=True)
        as_binary = raw.fetchone()[0]
    assert np.array_equal(as_text, vectors[7]) and np.array_equal(as_binary, vectors[7])


def test_the_adapters_stay_on_their_cursor(live_db):
    """A numpy array on a cursor that did not ask for pgvector's adapters is not silently a vector."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            adapt_vectors(cursor)
        with connection.cursor() as other, pytest.raises(ProgrammingError, match="adapt"):
            params: list[Any] = [np.ones(3, dtype=np.float32)]
            other.execute("SELECT %s::vector", params)


@pytest.mark.parametrize("bad", [np.ones(383), np.array([np.nan] + [0.0] * 383)])
def test_a_content_vector_must_have_384_finite_values(bad):
    with pytest.raises(ValueError, match="content vector"):
        content_vector(bad)


def test_scores_are_exact_cosines(live_db, catalogue):
    tid, _, vectors = catalogue
    with tenant_context(tid):
        found = vectors_knn(tenant_id=tid, vector=vectors[3], k=10)
    exact = vectors @ vectors[3]
    for _, ext, score in found:
        assert score == pytest.approx(float(exact[int(ext[1:])]), abs=1e-5)


def test_similar_items_find_their_anchor_in_the_same_statement(live_db, catalogue):
    """Given an item, when its neighbours are asked for, then the answer is the k-NN of its own vector
    (itself and unavailable items excluded), and the lookup, the vector and the scan are one scan statement."""
    tid, pks, vectors = catalogue
    with tenant_context(tid):
        expected = vectors_knn(tenant_id=tid, vector=vectors[4], k=10, exclude_pks=[pks["v4"]])
        with CaptureQueriesContext(connection) as captured:
            found = vectors_knn_of_item(tenant_id=tid, external_id="v4", k=10)
    assert found == expected and len(found) == 10
    assert all(int(ext[1:]) % 7 != 0 and ext != "v4" for _, ext, _ in found)
    scans = [q for q in captured.captured_queries if "catalog_itemvector" in q["sql"]]
    assert len(scans) == 1 and "catalog_item i" in scans[0]["sql"]
    assert len(captured) == 2  # the hnsw knobs and the scan: one pipelined round trip


def test_similar_items_keep_their_answers_for_unknown_unencoded_and_filtered_out_items(live_db, catalogue):
    tid, _, _ = catalogue
    with pytest.raises(NotFound):
        similar_items(tenant_id=tid, external_id="nope", k=5)
    with pytest.raises(Conflict) as refused:
        similar_items(tenant_id=tid, external_id="bare", k=5)
    assert refused.value.code == "not_encoded"
    assert similar_items(tenant_id=tid, external_id="v4", k=5, category="no-such-category") == []
    tenth = similar_items(tenant_id=tid, external_id="v4", k=5, category="tenth")
    assert len(tenth) == 5 and all(int(item["id"][1:]) % 10 == 0 for item in tenth)

"""The serving k-NN on a partition big enough for its HNSW index: filters, iterative scans, one round trip."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.catalog.models import EncodingStatus, Item
from apps.catalog.partitions import vector_partition_analyze
from apps.catalog.selectors import item_pks_by_external_ids
from apps.catalog.vectors import VectorRow, vectors_write
from apps.core.tenant_db import tenant_context
from apps.serving.hnsw import content_knn
from tests.support import make_tenant

N = 1500
RARE_EVERY = 50


@pytest.fixture(scope="module")
def partition(django_db_setup: None, django_db_blocker: Any) -> Any:
    with django_db_blocker.unblock():
        tid = make_tenant("hnsw").tenant.id
        with tenant_context(tid):
            Item.objects.bulk_create(
                [
                    Item(
                        tenant_id=tid,
                        external_id=str(i),
                        title=f"item {i}",
                        available=i % 9 != 0,
                        categories=["rare"] if i % RARE_EVERY == 0 else ["common"],
                        content_hash="0" * 64,
                        encoded_hash="0" * 64,
                        encoding_status=EncodingStatus.READY,
                    )
                    for i in range(N)
                ]
            )
        pks = item_pks_by_external_ids(tid, [str(i) for i in range(N)])
        rng = np.random.default_rng(11)
        vectors = rng.standard_normal((N, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        with tenant_context(tid):
            vectors_write(
                tenant_id=tid,
                rows=[
                    VectorRow(
                        item_pk=pks[str(i)],
                        external_id=str(i),
                        vector=vectors[i],
                        available=i % 9 != 0,
                        categories=["rare"] if i % RARE_EVERY == 0 else ["common"],
                        model="synthetic",
                        content_hash="0" * 64,
                    )
                    for i in range(N)
                ],
            )
            vector_partition_analyze(tid)
        yield tid, pks, vectors


def test_a_rare_category_still_gets_k_results_from_a_short_graph_walk(live_db, partition, settings):
    tid, _, vectors = partition
    settings.SOTTO = {
        **settings.SOTTO,
        "SERVING_HNSW_EF_SEARCH": 10,
    }  # the walk alone would meet about one "rare" item
    with tenant_context(tid):
        with (
            connection.cursor() as cursor
        ):  # a partition this small could be sorted whole: use the HNSW index
            cursor.execute(
                "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_sort', 'off', true)"
            )
        found = content_knn(tenant_id=tid, vector=vectors[1], k=10, category="rare", available_only=False)
    assert len(found) == 10
    assert all(int(ext) % RARE_EVERY == 0 for _, ext, _ in found)
    scores = [s for _, _, s in found]
    assert scores == sorted(scores, reverse=True)


def test_exclusions_and_availability_hold_and_scores_are_cosines(live_db, partition):
    tid, pks, vectors = partition
    exact = vectors @ vectors[3]
    excluded = {pks[str(i)] for i in range(60)}
    with tenant_context(tid):
        found = content_knn(tenant_id=tid, vector=vectors[3], k=20, exclude_pks=excluded)
    assert len(found) == 20
    for pk, ext, score in found:
        assert pk not in excluded and int(ext) % 9 != 0
        assert score == pytest.approx(float(exact[int(ext)]), abs=1e-5)


def test_the_scan_is_one_round_trip_and_its_knobs_stay_in_the_transaction(live_db, partition):
    tid, _, vectors = partition
    with transaction.atomic():
        with tenant_context(tid), CaptureQueriesContext(connection) as captured:
            content_knn(tenant_id=tid, vector=vectors[5], k=10)
        assert len([q for q in captured.captured_queries if "catalog_itemvector" in q["sql"]]) == 1
        with connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('hnsw.iterative_scan'), current_setting('hnsw.ef_search')")
            assert cursor.fetchone() == ("relaxed_order", "200")  # set inside this transaction...
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.iterative_scan')")
        assert cursor.fetchone() == ("off",)  # ...and gone after it: never leaks to the next request


def test_the_knobs_and_the_prepared_scan_leave_in_one_pipeline(live_db, partition):
    """Given a scan, when it runs, then its knobs and the scan itself are both executed in psycopg's
    pipeline mode (one write, one wait) and the scan is bound server-side (prepared, binary vector)."""
    from psycopg.pq import PipelineStatus

    from apps.core.bound_cursor import BoundCursor

    tid, _, vectors = partition
    seen: list[tuple[str, bool]] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        assert isinstance(context["cursor"].cursor, BoundCursor)
        seen.append((" ".join(sql.split()), connection.connection.info.pipeline_status == PipelineStatus.ON))
        return execute(sql, params, many, context)

    with transaction.atomic(), tenant_context(tid), connection.execute_wrapper(record):
        found = content_knn(tenant_id=tid, vector=vectors[8], k=10)
    assert len(found) == 10
    assert [on for _, on in seen] == [True, True], seen
    assert seen[0][0].startswith("SELECT set_config('hnsw.ef_search'") and "<=> %s::vector" in seen[1][0]

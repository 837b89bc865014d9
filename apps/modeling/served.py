"""Served item vectors: one LIST partition per tenant, one leaf per model version, one HNSW each.

Raw SQL over ``modeling_served_vector`` (DDL in migration 0002). Every function runs in the
caller's transaction, which must be scoped to the tenant (``tenant_context``): RLS is the second
lock, the explicit ``tenant_id = %s AND version = %s`` the first, and it also prunes the plan to
the (tenant, version) leaf whose HNSW index serves ``ORDER BY embedding::vector(d) <=> q``.
Vectors travel through pgvector's own psycopg adapters (``apps.core.vector_adapters``, registered
on each cursor that carries one): numpy float32 arrays in.

Lifecycle of a version's vectors (``apps.modeling.training``): ``version_create`` (short
transaction: DDL locks the tenant's partition briefly) → ``vectors_upsert`` in chunks →
``version_index`` (HNSW build + ANALYZE) → the pointer switch → ``version_drop`` of versions
older than the previous one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
from django.db import connection

from apps.core.conf import sotto
from apps.core.hnsw import Neighbour, hnsw_top_k
from apps.core.vector_adapters import adapt_vectors

log = logging.getLogger(__name__)

MAX_DIM = 2000  # pgvector's HNSW limit for ``vector``


def served_vector(vector: np.ndarray | Sequence[float]) -> np.ndarray:
    """The vector as a query parameter: flat float32 (dumped by pgvector's adapters, every value
    exact); ``ValueError`` unless it has 1 to ``MAX_DIM`` finite values."""
    arr = np.ascontiguousarray(vector, dtype=np.float32).ravel()
    if not 1 <= arr.shape[0] <= MAX_DIM:
        raise ValueError(f"served vectors have 1 to {MAX_DIM} dimensions, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("served vector holds NaN or infinity")
    return arr


def leaf_name(tenant_id: int, version: int) -> str:
    return f"modeling_served_vector_t{int(tenant_id)}_v{int(version)}"


def version_create(*, tenant_id: int, version: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT modeling_served_vector_version_create(%s, %s)", [int(tenant_id), int(version)])


def version_index(*, tenant_id: int, version: int, dim: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT modeling_served_vector_version_index(%s, %s, %s)",
            [int(tenant_id), int(version), int(dim)],
        )


def version_drop(*, tenant_id: int, version: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT modeling_served_vector_version_drop(%s, %s)", [int(tenant_id), int(version)])


def version_exists(*, tenant_id: int, version: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [leaf_name(tenant_id, version)])
        row = cursor.fetchone()
    return bool(row and row[0])


_UPSERT = """
INSERT INTO modeling_served_vector (tenant_id, version, item_id, external_id, embedding, available, categories)
SELECT %s, %s, i.id, i.external_id, v.embedding, i.available, i.categories
FROM unnest(%s::bigint[], %s::vector[]) AS v(item_id, embedding)
JOIN catalog_item i ON i.id = v.item_id AND i.tenant_id = %s
ON CONFLICT (tenant_id, version, item_id) DO UPDATE SET
    embedding = EXCLUDED.embedding, external_id = EXCLUDED.external_id,
    available = EXCLUDED.available, categories = EXCLUDED.categories
"""


def vectors_upsert(
    *, tenant_id: int, version: int, item_pks: Sequence[int], vectors: np.ndarray, chunk: int = 500
) -> int:
    """Write (or replace) served vectors; ``available``/``categories`` are copied from the item row.

    Items deleted meanwhile are skipped (the join finds no row). Returns rows written.
    """
    if len(item_pks) != len(vectors):
        raise ValueError("one vector per item")
    written = 0
    with connection.cursor() as cursor:
        adapt_vectors(cursor)
        for start in range(0, len(item_pks), chunk):
            pks = [int(pk) for pk in item_pks[start : start + chunk]]
            arrays = [served_vector(v) for v in vectors[start : start + chunk]]
            cursor.execute(_UPSERT, [int(tenant_id), int(version), pks, arrays, int(tenant_id)])
            written += max(cursor.rowcount, 0)
    return written


def vectors_count(*, tenant_id: int, version: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM modeling_served_vector WHERE tenant_id = %s AND version = %s",
            [int(tenant_id), int(version)],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def missing_item_pks(*, tenant_id: int, version: int) -> list[int]:
    """Items that have a content vector but no served vector in this version (encoded meanwhile)."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT cv.item_id FROM catalog_itemvector cv
            WHERE cv.tenant_id = %s AND NOT EXISTS (
                SELECT 1 FROM modeling_served_vector s
                WHERE s.tenant_id = %s AND s.version = %s AND s.item_id = cv.item_id)
            ORDER BY cv.item_id
            """,
            [int(tenant_id), int(tenant_id), int(version)],
        )
        return [int(row[0]) for row in cursor.fetchall()]


def ef_search_default() -> int:
    return sotto().modeling_hnsw_ef_search


def vectors_knn(
    *,
    tenant_id: int,
    version: int,
    vector: np.ndarray | Sequence[float],
    k: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """Approximate cosine top-k over one version's served vectors, best first.

    With any filter, pgvector 0.8's iterative scan (``relaxed_order``) keeps walking the graph
    until k rows pass it; the outer ``ORDER BY`` restores exact order among the k found.
    """
    dim = int(np.asarray(vector).size)
    return hnsw_top_k(
        table="modeling_served_vector",
        tenant_id=tenant_id,
        vector=served_vector(vector),
        k=k,
        ef_search=ef_search if ef_search is not None else ef_search_default(),
        exclude_pks=exclude_pks,
        category=category,
        available_only=available_only,
        equals=[("version", int(version))],
        cast=f"vector({dim})",
    )


def served_vectors_refresh_items(*, tenant_id: int, item_pks: Sequence[int]) -> int:
    """Write served vectors of these items (content vectors just arrived) for every live version.

    Runs in the catalogue's encode transaction (``on_item_vectors_ready``), so the content vector
    and its served vectors commit together. An item in the version's training universe keeps its
    DP popularity coordinate; a new item gets 0 (no released count). Idempotent.
    """
    from apps.catalog.selectors import content_vectors
    from apps.modeling.artifacts import live_versions, load_artifacts
    from apps.modeling.ml.inference import item_vectors

    if not item_pks:
        return 0
    versions = live_versions(tenant_id)
    if not versions:
        return 0
    vectors = content_vectors(tenant_id, item_pks)
    if not vectors:
        return 0
    pks = sorted(vectors)
    content = np.stack([vectors[pk] for pk in pks]).astype(np.float32)
    written = 0
    for version in versions:
        if not version_exists(tenant_id=tenant_id, version=version):
            continue
        art = load_artifacts(tenant_id, version)
        extras = art.extras_for(pks)
        written += vectors_upsert(
            tenant_id=tenant_id,
            version=version,
            item_pks=pks,
            vectors=item_vectors(art.weights, content, extras),
        )
    return written

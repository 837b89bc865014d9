"""Raw SQL over the tenant-partitioned content-vector table ``catalog_itemvector``.

Every function here runs in the caller's transaction and relies on it being scoped to the
tenant (``tenant_context``): RLS is the second lock, the explicit ``tenant_id = %s`` the first,
and it also lets the planner prune to the tenant's partition, whose HNSW index then serves the
``ORDER BY embedding <=> q``. Vectors travel through pgvector's own psycopg adapters
(``apps.core.vector_adapters``), registered on each cursor that carries one, so no other app's
parameters change meaning: numpy float32 arrays in, numpy float32 arrays out.

Index parameters (m, ef_construction live in migration 0001; ef_search is a setting): see
docs/catalog.md for the measured recall and why these values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from apps.core.conf import sotto
from apps.core.hnsw import Neighbour, filters, hnsw_top_k, knn_rows
from apps.core.vector_adapters import adapt_vectors

VECTOR_DIM = 384


@dataclass(frozen=True)
class VectorRow:
    item_pk: int
    external_id: str
    vector: np.ndarray
    available: bool
    categories: Sequence[str]
    model: str
    content_hash: str


def content_vector(vector: np.ndarray | Sequence[float]) -> np.ndarray:
    """The vector as a query parameter: flat float32 (dumped by pgvector's adapters, every value
    exact); ``ValueError`` unless it has ``VECTOR_DIM`` finite values."""
    arr = np.ascontiguousarray(vector, dtype=np.float32).ravel()
    if arr.shape[0] != VECTOR_DIM:
        raise ValueError(f"content vectors have {VECTOR_DIM} dimensions, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("content vector holds NaN or infinity")
    return arr


def vector_literal(vector: np.ndarray | Sequence[float]) -> str:
    """``[x1,x2,...]`` with enough digits that float32 values round-trip exactly: for SQL outside
    Django's cursors (the benchmarks' bare psycopg connections); the product passes arrays."""
    return "[" + ",".join(repr(x) for x in content_vector(vector).tolist()) + "]"


def parse_vector(text: str) -> np.ndarray:
    """A vector's text form (``embedding::text``) as float32; the product's reads load arrays directly."""
    return np.array(text.strip()[1:-1].split(","), dtype=np.float32)


def ef_search_default() -> int:
    return sotto().catalog_hnsw_ef_search


def vectors_write(*, tenant_id: int, rows: Sequence[VectorRow]) -> None:
    """Insert or replace the vectors of ``rows`` (one statement per row, pipelined by psycopg)."""
    if not rows:
        return
    params: list[list[Any]] = [
        [
            int(tenant_id),
            r.item_pk,
            r.external_id,
            content_vector(r.vector),
            r.available,
            list(r.categories),
            r.model,
            r.content_hash,
        ]
        for r in rows
    ]
    with connection.cursor() as cursor:
        adapt_vectors(cursor)
        cursor.executemany(
            """
            INSERT INTO catalog_itemvector
                (tenant_id, item_id, external_id, embedding, available, categories, model, content_hash, updated_at)
            VALUES (%s, %s, %s, %s::vector, %s, %s::varchar[], %s, %s, now())
            ON CONFLICT (tenant_id, item_id) DO UPDATE SET
                embedding = EXCLUDED.embedding, available = EXCLUDED.available,
                categories = EXCLUDED.categories, model = EXCLUDED.model,
                content_hash = EXCLUDED.content_hash, updated_at = EXCLUDED.updated_at
            """,
            params,
        )


def vectors_sync_metadata(*, tenant_id: int, rows: Iterable[tuple[int, bool, Sequence[str]]]) -> None:
    """Keep the filter columns (available, categories) of existing vectors in step with their items."""
    params: list[list[Any]] = [
        [available, list(categories), int(tenant_id), pk] for pk, available, categories in rows
    ]
    if not params:
        return
    with connection.cursor() as cursor:
        cursor.executemany(
            "UPDATE catalog_itemvector SET available = %s, categories = %s::varchar[] "
            "WHERE tenant_id = %s AND item_id = %s",
            params,
        )


def vectors_fetch(*, tenant_id: int, item_pks: Iterable[int]) -> dict[int, np.ndarray]:
    pks = sorted({int(pk) for pk in item_pks})
    if not pks:
        return {}
    with connection.cursor() as cursor:
        adapt_vectors(cursor)
        cursor.execute(
            "SELECT item_id, embedding FROM catalog_itemvector WHERE tenant_id = %s AND item_id = ANY(%s::bigint[])",
            [int(tenant_id), pks],
        )
        return {int(pk): vector for pk, vector in cursor.fetchall()}


def vectors_count(*, tenant_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM catalog_itemvector WHERE tenant_id = %s", [int(tenant_id)])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def vectors_knn(
    *,
    tenant_id: int,
    vector: np.ndarray | Sequence[float],
    k: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """Approximate cosine top-k in the tenant's HNSW index, best first.

    With any filter (exclusions, category, availability) pgvector 0.8's iterative scan
    (``relaxed_order``) keeps walking the graph until k rows pass the filter, so a filter never
    starves the result; relaxed order is restored by the outer ``ORDER BY``.
    """
    found = hnsw_top_k(
        table="catalog_itemvector",
        tenant_id=tenant_id,
        vector=content_vector(vector),
        k=k,
        ef_search=ef_search if ef_search is not None else ef_search_default(),
        exclude_pks=exclude_pks,
        category=category,
        available_only=available_only,
    )
    return found


_NEAR_ITEM = """
WITH anchor AS MATERIALIZED (
    SELECT v.item_id, v.embedding FROM catalog_item i
    JOIN catalog_itemvector v ON v.tenant_id = i.tenant_id AND v.item_id = i.id
    WHERE i.tenant_id = %s AND i.external_id = %s
), nearest AS MATERIALIZED (
    SELECT item_id, external_id, embedding <=> (SELECT embedding FROM anchor) AS distance
    FROM catalog_itemvector
    WHERE {where} AND item_id <> (SELECT item_id FROM anchor) AND EXISTS (SELECT FROM anchor)
    ORDER BY distance
    LIMIT %s
)
SELECT item_id, external_id, 1 - distance FROM nearest ORDER BY distance, item_id
"""


def vectors_knn_of_item(
    *,
    tenant_id: int,
    external_id: str,
    k: int,
    category: str | None = None,
    ef_search: int | None = None,
) -> list[Neighbour]:
    """:func:`vectors_knn` around one item's own content vector, the item itself excluded, available
    items only: the item lookup, its vector and the scan are ONE statement (one round trip).

    ``[]`` when the item is unknown, has no content vector yet, or nothing passes the filters: the
    caller tells these apart (only then) with its own reads.
    """
    if k < 1:
        return []
    where, params, _ = filters(tenant_id=tenant_id, category=category)
    sql = _NEAR_ITEM.format(where=" AND ".join(where))
    return knn_rows(
        sql=sql,
        params=[int(tenant_id), external_id, *params, int(k)],
        k=k,
        ef_search=ef_search if ef_search is not None else ef_search_default(),
        filtered=True,
    )


def vectors_exact(
    *, tenant_id: int, vector: np.ndarray | Sequence[float], k: int, exclude_pks: Iterable[int] = ()
) -> list[Neighbour]:
    """Exact cosine top-k by a sequential scan (the ground truth the recall benchmark compares to)."""
    query = content_vector(vector)
    excluded = sorted({int(pk) for pk in exclude_pks})
    params: list[Any] = [query, int(tenant_id), excluded, query, int(k)]
    with connection.cursor() as cursor:
        adapt_vectors(cursor)
        cursor.execute("SELECT set_config('enable_indexscan', 'off', true)")
        cursor.execute(
            """
            SELECT item_id, external_id, 1 - (embedding <=> %s::vector) AS score
            FROM catalog_itemvector
            WHERE tenant_id = %s AND item_id <> ALL(%s::bigint[])
            ORDER BY embedding <=> %s::vector, item_id
            LIMIT %s
            """,
            params,
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT set_config('enable_indexscan', 'on', true)")
    return [Neighbour(int(pk), str(ext), float(score)) for pk, ext, score in rows]

"""Raw SQL over the tenant-partitioned content-vector table ``catalog_itemvector``.

Every function here runs in the caller's transaction and relies on it being scoped to the
tenant (``tenant_context``): RLS is the second lock, the explicit ``tenant_id = %s`` the first,
and it also lets the planner prune to the tenant's partition, whose HNSW index then serves the
``ORDER BY embedding <=> q``. Vectors travel as pgvector text literals, so no per-connection
type registration is needed and no other app's parameters change meaning.

Index parameters (m, ef_construction live in migration 0001; ef_search is a setting): see
docs/catalog.md for the measured recall and why these values.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db import connection

from apps.core.conf import sotto_setting
from apps.core.hnsw import Neighbour, hnsw_top_k

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


def vector_literal(vector: np.ndarray | Sequence[float]) -> str:
    """``[x1,x2,...]`` with enough digits that float32 values round-trip exactly."""
    arr = np.asarray(vector, dtype=np.float32).ravel()
    if arr.shape[0] != VECTOR_DIM:
        raise ValueError(f"content vectors have {VECTOR_DIM} dimensions, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("content vector holds NaN or infinity")
    return "[" + ",".join(repr(x) for x in arr.tolist()) + "]"


def parse_vector(text: str) -> np.ndarray:
    return np.array(text.strip()[1:-1].split(","), dtype=np.float32)


def ef_search_default() -> int:
    return int(sotto_setting("CATALOG_HNSW_EF_SEARCH"))


def vectors_write(*, tenant_id: int, rows: Sequence[VectorRow]) -> None:
    """Insert or replace the vectors of ``rows`` (one statement per row, pipelined by psycopg)."""
    if not rows:
        return
    params: list[list[Any]] = [
        [int(tenant_id), r.item_pk, r.external_id, vector_literal(r.vector), r.available, list(r.categories),
         r.model, r.content_hash]
        for r in rows
    ]
    with connection.cursor() as cursor:
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
    params: list[list[Any]] = [[available, list(categories), int(tenant_id), pk] for pk, available, categories in rows]
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
        cursor.execute(
            "SELECT item_id, embedding::text FROM catalog_itemvector WHERE tenant_id = %s AND item_id = ANY(%s::bigint[])",
            [int(tenant_id), pks],
        )
        return {int(pk): parse_vector(text) for pk, text in cursor.fetchall()}


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
        table="catalog_itemvector", tenant_id=tenant_id, literal=vector_literal(vector), k=k,
        ef_search=ef_search if ef_search is not None else ef_search_default(), exclude_pks=exclude_pks,
        category=category, available_only=available_only,
    )
    return found


def vectors_exact(
    *, tenant_id: int, vector: np.ndarray | Sequence[float], k: int, exclude_pks: Iterable[int] = ()
) -> list[Neighbour]:
    """Exact cosine top-k by a sequential scan (the ground truth the recall benchmark compares to)."""
    literal = vector_literal(vector)
    excluded = sorted({int(pk) for pk in exclude_pks})
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('enable_indexscan', 'off', true)")
        cursor.execute(
            """
            SELECT item_id, external_id, 1 - (embedding <=> %s::vector) AS score
            FROM catalog_itemvector
            WHERE tenant_id = %s AND item_id <> ALL(%s::bigint[])
            ORDER BY embedding <=> %s::vector, item_id
            LIMIT %s
            """,
            [literal, int(tenant_id), excluded, literal, int(k)],
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT set_config('enable_indexscan', 'on', true)")
    return [Neighbour(int(pk), str(ext), float(score)) for pk, ext, score in rows]

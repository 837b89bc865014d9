"""Cosine top-k over the tenant's content vectors, in two round trips, for the serving hot path.

The same query as the catalogue's ``vectors_knn`` (and the catalogue's index and ``ef_search``
setting), shaped for a request that is already inside its tenant-scoped transaction:

- ``hnsw.ef_search`` and ``hnsw.iterative_scan`` are set in ONE statement (the catalogue sends two),
  transaction-local (``set_config(..., true)``), so they never leak to the next request;
- no ``tenant_context`` of its own: the catalogue's selectors open one per call (savepoint, read,
  set, restore, release: five more round trips), while a ``TenantAPIView`` request already runs with
  its RLS tenant set. The explicit ``tenant_id = %s`` still prunes to the tenant's partition and
  RLS stays the second lock.

The iterative scan (pgvector 0.8, ``relaxed_order``) is on whenever a filter applies (always, as
availability is one), so exclusions and categories never starve the result; the outer
``ORDER BY`` restores exact order among the k found.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from django.db import connection

from apps.catalog.vectors import ef_search_default, vector_literal

Candidate = tuple[int, str, float]


def content_knn(
    *, tenant_id: int, vector: np.ndarray, k: int, exclude_pks: Iterable[int] = (), category: str | None = None,
    available_only: bool = True,
) -> list[Candidate]:
    """``[(item_pk, external_id, cosine)]`` best first (ties by pk); call inside a tenant-scoped transaction."""
    if k < 1:
        return []
    literal = vector_literal(vector)
    excluded = sorted({int(pk) for pk in exclude_pks})
    where = ["tenant_id = %s"]
    params: list[Any] = [literal, int(tenant_id)]
    if available_only:
        where.append("available")
    if category is not None:
        where.append("categories @> ARRAY[%s]::varchar[]")
        params.append(category)
    if excluded:
        where.append("item_id <> ALL(%s::bigint[])")
        params.append(excluded)
    params.append(int(k))
    filtered = available_only or category is not None or bool(excluded)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true)",
            [str(max(ef_search_default(), int(k))), "relaxed_order" if filtered else "off"],
        )
        cursor.execute(
            f"""
            WITH nearest AS MATERIALIZED (
                SELECT item_id, external_id, embedding <=> %s::vector AS distance
                FROM catalog_itemvector
                WHERE {" AND ".join(where)}
                ORDER BY distance
                LIMIT %s
            )
            SELECT item_id, external_id, 1 - distance FROM nearest ORDER BY distance, item_id
            """,  # noqa: S608 - only fixed clauses are interpolated; values are parameters
            params,
        )
        return [(int(pk), str(ext), float(score)) for pk, ext, score in cursor.fetchall()]

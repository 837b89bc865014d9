"""One filtered cosine top-k over a tenant's HNSW-indexed vector table, in one round trip.

The catalogue's content vectors (similar items), the served vectors of each model version and the
serving hot path all ask the same question, so they share this one query:

- ``hnsw.ef_search`` (at least k) and ``hnsw.iterative_scan`` are set transaction-local by a first
  statement pipelined with the scan (psycopg pipeline mode: both statements and their Sync leave
  in one write and their results come back together), so the knobs cost no round trip of their own
  and never leak to the next transaction;
- the scan is **server-side bound** with **binary** parameters and results, on the request's own
  connection and transaction, with the query vector in pgvector's binary form (``pgvector.psycopg``'s
  dumper, ``apps.core.vector_adapters``) instead of a 7 KB text literal (``apps.core.bound_cursor``),
  prepared after ``DATABASE_PREPARE_THRESHOLD`` runs on a connection but planned on every call;
- with any filter (availability, category, exclusions, extra equality columns) pgvector 0.8's
  iterative scan (``relaxed_order``) keeps walking the graph until k rows pass it, so filters never
  starve the result; the outer ``ORDER BY`` restores exact order (ties by item id);
- the explicit ``tenant_id`` predicate prunes to the tenant's partition; RLS stays the second lock.

Call it inside a transaction scoped to the tenant. Both statements go through Django's cursor
wrapper (so they are logged and counted like any other), and database errors surface as Django's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np
from django.db import connection

from apps.core.bound_cursor import bound_cursor

# plan_cache_mode: the scan may be prepared (``DATABASE_PREPARE_THRESHOLD``), which saves its parse,
# but is planned for each call's own k, tenant partition and filters: a generic plan cannot see
# LIMIT k and might trade the HNSW index for an exact sort.
KNOBS = (
    "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true),"
    " set_config('plan_cache_mode', 'force_custom_plan', true)"
)


class Neighbour(NamedTuple):
    """One ranked item: what every k-NN, popularity and fallback list in the product is made of."""

    item_pk: int
    external_id: str
    score: float


def filters(
    *,
    tenant_id: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
    equals: Sequence[tuple[str, Any]] = (),
) -> tuple[list[str], list[Any], bool]:
    """``(where clauses, their parameters, whether any filter applies)`` for a tenant's vector table."""
    excluded = sorted({int(pk) for pk in exclude_pks})
    where = ["tenant_id = %s"]
    params: list[Any] = [int(tenant_id)]
    for column, value in equals:
        where.append(f"{column} = %s")
        params.append(value)
    if available_only:
        where.append("available")
    if category is not None:
        where.append("categories @> ARRAY[%s]::varchar[]")
        params.append(category)
    if excluded:
        where.append("item_id <> ALL(%s::bigint[])")
        params.append(excluded)
    return where, params, available_only or category is not None or bool(excluded)


def knn_rows(*, sql: str, params: Sequence[Any], k: int, ef_search: int, filtered: bool) -> list[Neighbour]:
    """Run ``sql`` (a scan answering ``(item_pk, external_id, cosine)``) after its knobs, in
    one round trip; call inside a tenant-scoped transaction."""
    knobs = [str(max(int(ef_search), int(k))), "relaxed_order" if filtered else "off"]
    with bound_cursor(vectors=True) as cursor, connection.wrap_database_errors:
        with connection.connection.pipeline():
            cursor.execute(KNOBS, knobs)
            cursor.execute(sql, params)
        rows = cursor.fetchall()  # the pipeline's Sync brought every result back: the scan's are the cursor's
    return [Neighbour(int(pk), str(ext), float(score)) for pk, ext, score in rows]


def hnsw_top_k(
    *,
    table: str,
    tenant_id: int,
    vector: np.ndarray,
    k: int,
    ef_search: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
    equals: Sequence[tuple[str, Any]] = (),
    cast: str = "vector",
) -> list[Neighbour]:
    """``[(item_pk, external_id, cosine)]`` best first. ``table``, ``equals`` column names and
    ``cast`` are code constants (never user input); every value travels as a parameter, ``vector``
    (float32, already validated by the caller) in pgvector's binary form."""
    if k < 1:
        return []
    where, params, filtered = filters(
        tenant_id=tenant_id,
        exclude_pks=exclude_pks,
        category=category,
        available_only=available_only,
        equals=equals,
    )
    sql = f"""
        WITH nearest AS MATERIALIZED (
            SELECT item_id, external_id, embedding::{cast} <=> %s::{cast} AS distance
            FROM {table}
            WHERE {" AND ".join(where)}
            ORDER BY distance
            LIMIT %s
        )
        SELECT item_id, external_id, 1 - distance FROM nearest ORDER BY distance, item_id
    """  # noqa: S608 # nosec B608 - only code constants are interpolated; values are parameters
    return knn_rows(sql=sql, params=[vector, *params, int(k)], k=k, ef_search=ef_search, filtered=filtered)

"""One filtered cosine top-k over a tenant's HNSW-indexed vector table, in one round trip.

The catalogue's content vectors, the served vectors of each model version and the serving hot
path all ask the same question, so they share this one query:

- ``hnsw.ef_search`` (at least k) and ``hnsw.iterative_scan`` are set transaction-local by a first
  statement sent in the same ``execute`` as the scan: Django's psycopg 3 cursor binds client-side,
  so both travel as one message and cost one round trip;
- with any filter (availability, category, exclusions, extra equality columns) pgvector 0.8's
  iterative scan (``relaxed_order``) keeps walking the graph until k rows pass it, so filters never
  starve the result; the outer ``ORDER BY`` restores exact order (ties by item id);
- the explicit ``tenant_id`` predicate prunes to the tenant's partition; RLS stays the second lock.
Call it inside a transaction scoped to the tenant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from django.db import connection


class Neighbour(NamedTuple):
    """One ranked item: what every k-NN, popularity and fallback list in the product is made of."""

    item_pk: int
    external_id: str
    score: float


def hnsw_top_k(
    *,
    table: str,
    tenant_id: int,
    literal: str,
    k: int,
    ef_search: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
    equals: Sequence[tuple[str, Any]] = (),
    cast: str = "vector",
) -> list[Neighbour]:
    """``[(item_pk, external_id, cosine)]`` best first. ``table``, ``equals`` column names and
    ``cast`` are code constants (never user input); every value travels as a parameter."""
    if k < 1:
        return []
    excluded = sorted({int(pk) for pk in exclude_pks})
    where = ["tenant_id = %s"]
    params: list[Any] = [literal, int(tenant_id)]
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
    params.append(int(k))
    filtered = available_only or category is not None or bool(excluded)
    knobs = [str(max(int(ef_search), int(k))), "relaxed_order" if filtered else "off"]
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', %s, true);
            WITH nearest AS MATERIALIZED (
                SELECT item_id, external_id, embedding::{cast} <=> %s::{cast} AS distance
                FROM {table}
                WHERE {" AND ".join(where)}
                ORDER BY distance
                LIMIT %s
            )
            SELECT item_id, external_id, 1 - distance FROM nearest ORDER BY distance, item_id
            """,  # noqa: S608 # nosec B608 - only code constants are interpolated; values are parameters
            knobs + params,
        )
        if not cursor.nextset():  # the first result is the set_config row; the scan's rows come next
            raise RuntimeError("the k-NN statement returned no result set")
        return [Neighbour(int(pk), str(ext), float(score)) for pk, ext, score in cursor.fetchall()]

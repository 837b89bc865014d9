"""The catalogue's newest available items: the last cold-start fallback, in ONE round trip.

Used when there is no DP popularity release (or it has fewer than k items passing the filters).
The catalogue is the tenant's own public content, so this reads no end-user data and spends no
privacy budget. "Newest" is when the item was first added (``created_at``; an update does not
make it new), ties broken by the newer pk. The filters are serving's: available items only,
``category`` and the excluded pks (the user's seen items, and items already in the list).

No ``tenant_context`` of its own (as ``apps.serving.hnsw``): call inside the request's
tenant-scoped transaction; ``tenant_id = %s`` still prunes and RLS stays the second lock. There is
no ``(tenant, created_at)`` index on ``catalog_item``: the tenant's available items are sorted
(top-k heapsort), which is cheap for a catalogue before its first training run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection

from apps.core.hnsw import Neighbour

NEWEST_SCORE = 0.0  # no relevance signal; below every positive noisy count, so a topped-up list stays sorted

_NEWEST = "SELECT id, external_id FROM catalog_item WHERE tenant_id = %s AND available"


def newest_items(
    *, tenant_id: int, k: int, exclude_pks: Iterable[int] = (), category: str | None = None
) -> list[Neighbour]:
    """``[(item_pk, external_id, 0.0)]`` newest first; call inside a tenant-scoped transaction."""
    if k < 1:
        return []
    sql = _NEWEST
    params: list[Any] = [int(tenant_id)]
    if category is not None:
        sql += " AND categories @> ARRAY[%s]::varchar[]"
        params.append(category)
    excluded = sorted({int(pk) for pk in exclude_pks})
    if excluded:
        sql += " AND id <> ALL(%s::bigint[])"
        params.append(excluded)
    sql += " ORDER BY created_at DESC, id DESC LIMIT %s"
    params.append(int(k))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Neighbour(int(pk), str(ext), NEWEST_SCORE) for pk, ext in cursor.fetchall()]

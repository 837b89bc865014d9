"""Cosine top-k over the tenant's content vectors in ONE round trip, for the serving hot path.

The same query as the catalogue's ``vectors_knn`` over the catalogue's per-tenant HNSW index, shaped
for a request that is already inside its tenant-scoped transaction:

- ``hnsw.ef_search`` is serving's own ``SERVING_HNSW_EF_SEARCH`` (200; at least k): on the 100k-item
  benchmark it lifts recall@10 from about 0.93 (the catalogue's 100) to about 0.98 for a few
  milliseconds (docs/results/serving.md);
- ``hnsw.ef_search`` and ``hnsw.iterative_scan`` are set transaction-local (``set_config(..., true)``,
  so they never leak to the next request) by a statement pipelined with the scan, which is a prepared
  statement with the query vector in pgvector's binary form: one round trip (``apps.core.hnsw``,
  shared with the catalogue and modeling). On a busy 2-core machine a round trip is worth about a
  millisecond, as much as the scan itself (docs/results/serving.md);
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

import numpy as np

from apps.catalog.vectors import content_vector
from apps.core.conf import sotto
from apps.core.hnsw import Neighbour, hnsw_top_k


def ef_search(k: int) -> int:
    return max(sotto().serving_hnsw_ef_search, int(k))


def content_knn(
    *,
    tenant_id: int,
    vector: np.ndarray,
    k: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
) -> list[Neighbour]:
    """``[(item_pk, external_id, cosine)]`` best first (ties by pk); call inside a tenant-scoped transaction."""
    return hnsw_top_k(
        table="catalog_itemvector",
        tenant_id=tenant_id,
        vector=content_vector(vector),
        k=k,
        ef_search=ef_search(k),
        exclude_pks=exclude_pks,
        category=category,
        available_only=available_only,
    )

"""Catalogue reads, for the API and for other apps (profiles, serving, modeling).

Every selector scopes itself with ``tenant_context(tenant_id)`` (joining the caller's transaction
when there is one), so a caller cannot read another tenant's items or vectors by mistake.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.db.models import Count, Q

from apps.catalog.models import EncodingStatus, Item
from apps.catalog.vectors import vectors_fetch, vectors_knn, vectors_knn_of_item
from apps.core.errors import Conflict, DomainError, ErrorCode, NotFound
from apps.core.hnsw import Neighbour
from apps.core.tenant_db import tenant_context, tenant_scope

MAX_SIMILAR_K = 100
MAX_PAGE = 200


def content_vectors(tenant_id: int, item_pks: Iterable[int]) -> dict[int, np.ndarray]:
    """384-d L2-normalised float32 content vectors by item pk; items without a vector are absent."""
    with tenant_context(tenant_id):
        return vectors_fetch(tenant_id=tenant_id, item_pks=item_pks)


def item_pks_by_external_ids(tenant_id: int, ids: Iterable[str]) -> dict[str, int]:
    """The tenant's item pks for its own ids; unknown ids are absent."""
    wanted = sorted({str(i) for i in ids})
    if not wanted:
        return {}
    with tenant_context(tenant_id):
        return dict(
            Item.objects.filter(tenant_id=tenant_id, external_id__in=wanted).values_list("external_id", "pk")
        )


def items_by_external_ids(tenant_id: int, ids: Iterable[str]) -> dict[str, Item]:
    """The tenant's items for its own ids (one query, e.g. to put titles on a ranked list); unknown ids are absent."""
    wanted = sorted({str(i) for i in ids})
    if not wanted:
        return {}
    with tenant_context(tenant_id):
        return {
            item.external_id: item
            for item in Item.objects.filter(tenant_id=tenant_id, external_id__in=wanted)
        }


def external_ids_by_pks(tenant_id: int, item_pks: Iterable[int]) -> dict[int, str]:
    pks = sorted({int(pk) for pk in item_pks})
    if not pks:
        return {}
    with tenant_context(tenant_id):
        return dict(Item.objects.filter(tenant_id=tenant_id, pk__in=pks).values_list("pk", "external_id"))


def knn_content(
    tenant_id: int,
    vector: np.ndarray | Sequence[float],
    k: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
) -> list[Neighbour]:
    """Cosine top-k over the tenant's content vectors: ``[(item_pk, external_id, score)]``, best first.

    Served by the HNSW index of the tenant's own partition, with pgvector 0.8 iterative scans
    when filters apply, so a filter still yields k results when k items pass it.
    """
    with tenant_context(tenant_id):
        found = vectors_knn(
            tenant_id=tenant_id,
            vector=vector,
            k=k,
            exclude_pks=exclude_pks,
            category=category,
            available_only=available_only,
        )
    return found


def parse_k(raw: str | None, *, default: int = 10) -> int:
    if raw is None or raw == "":
        return default
    try:
        k = int(raw)
    except ValueError:
        raise DomainError(f"k must be an integer from 1 to {MAX_SIMILAR_K}", details={"k": raw}) from None
    if not 1 <= k <= MAX_SIMILAR_K:
        raise DomainError(f"k must be from 1 to {MAX_SIMILAR_K}, got {k}", details={"k": raw})
    return k


def similar_items(
    *, tenant_id: int, external_id: str, k: int, category: str | None = None
) -> list[dict[str, Any]]:
    """Items nearest to this one by content (itself excluded); NotFound for an unknown id, Conflict
    (``not_encoded``) for an item without a content vector yet.

    One statement in the common case (``vectors_knn_of_item``); only an empty answer pays the reads
    that say whether the item is unknown, not encoded, or simply has no neighbour passing the filters.
    """
    with tenant_scope(tenant_id):
        found = vectors_knn_of_item(tenant_id=tenant_id, external_id=external_id, k=k, category=category)
        if not found:
            item = (
                Item.objects.filter(tenant_id=tenant_id, external_id=external_id)
                .values("pk", "encoding_status")
                .first()
            )
            if item is None:
                raise NotFound(f"no item with id {external_id!r}")
            if not vectors_fetch(tenant_id=tenant_id, item_pks=[item["pk"]]):
                raise Conflict(
                    f"item {external_id!r} has no content vector yet (encoding {item['encoding_status']})",
                    code=ErrorCode.NOT_ENCODED,
                    details={"encoding_status": item["encoding_status"]},
                )
    return [{"id": n.external_id, "score": round(n.score, 6)} for n in found]


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    next_cursor: int | None


def item_get(*, tenant_id: int, external_id: str) -> Item:
    with tenant_context(tenant_id):
        item = Item.objects.filter(tenant_id=tenant_id, external_id=external_id).first()
    if item is None:
        raise NotFound(f"no item with id {external_id!r}")
    return item


def items_page(
    *,
    tenant_id: int,
    after_pk: int | None,
    limit: int,
    status: str | None = None,
    category: str | None = None,
) -> ItemPage:
    """Items in creation order (keyset pagination on the pk), ``limit`` at most ``MAX_PAGE``."""
    limit = max(1, min(limit, MAX_PAGE))
    with tenant_context(tenant_id):
        qs = Item.objects.filter(tenant_id=tenant_id).order_by("pk")
        if after_pk is not None:
            qs = qs.filter(pk__gt=after_pk)
        if status:
            qs = qs.filter(encoding_status=status)
        if category:
            qs = qs.filter(categories__contains=[category])
        rows = list(qs[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return ItemPage(items=rows, next_cursor=rows[-1].pk if more and rows else None)


def catalog_status(*, tenant_id: int) -> dict[str, int]:
    """Encoding progress: how many of the tenant's items are pending, ready or failed (and truncated)."""
    with tenant_context(tenant_id):
        counts = Item.objects.filter(tenant_id=tenant_id).aggregate(
            items=Count("pk"),
            pending=Count("pk", filter=Q(encoding_status=EncodingStatus.PENDING)),
            ready=Count("pk", filter=Q(encoding_status=EncodingStatus.READY)),
            failed=Count("pk", filter=Q(encoding_status=EncodingStatus.FAILED)),
            truncated=Count("pk", filter=Q(encoding_status=EncodingStatus.READY, encoding_truncated=True)),
        )
    return {key: int(value or 0) for key, value in counts.items()}

"""Catalogue state changes: upsert and delete items, encode them, record encoding failures.

Callers may rely on:
- ``items_upsert`` validates nothing itself beyond the batch size (pass ``ItemInput`` from
  ``validation.parse_items``) and writes the whole batch in one transaction, or nothing;
- an item is queued for encoding only when its encoder text changed (content hash), it is new,
  or its last encoding failed; identical content re-sent costs no encoding;
- ``items_encode`` is idempotent: it re-reads every item, skips those already encoded at their
  current hash, and writes vectors and statuses of one batch in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.catalog.models import EncodingStatus, Item
from apps.catalog.partitions import vector_partition_create
from apps.catalog.validation import MAX_BATCH, ItemInput, content_hash, content_text
from apps.catalog.vectors import VectorRow, vectors_sync_metadata, vectors_write
from apps.core.conf import sotto
from apps.core.errors import Conflict, NotFound, PayloadTooLarge
from apps.core.hooks import run_item_vectors_ready
from apps.core.tenant_db import tenant_context

log = logging.getLogger(__name__)

_UPDATE_FIELDS = [
    "title",
    "description",
    "categories",
    "attributes",
    "available",
    "content_hash",
    "encoding_status",
    "encoding_error",
    "updated_at",
]


@dataclass(frozen=True)
class UpsertResult:
    received: int
    created: int
    updated: int
    unchanged: int
    queued: int

    def as_dict(self) -> dict[str, int]:
        return {
            "received": self.received,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "queued_for_encoding": self.queued,
        }


@dataclass(frozen=True)
class EncodeOutcome:
    encoded: int
    skipped: int


def items_upsert(*, tenant_id: int, items: Sequence[ItemInput]) -> UpsertResult:
    """Create or update items by the tenant's id, all or nothing; encoding is queued on commit."""
    if len(items) > MAX_BATCH:
        raise PayloadTooLarge(f"{len(items)} items in one batch; the limit is {MAX_BATCH}")
    if not items:
        return UpsertResult(0, 0, 0, 0, 0)
    with tenant_context(tenant_id):
        for attempt in (1, 2):
            try:
                with transaction.atomic():
                    result, to_encode = _upsert(tenant_id, items)
                break
            except IntegrityError as exc:  # a concurrent request created one of the same ids first
                if attempt == 2:
                    raise Conflict("another request is writing the same items; retry") from exc
        if to_encode:
            transaction.on_commit(
                lambda: encoding_enqueue(tenant_id=tenant_id, item_pks=to_encode), robust=True
            )
    return result


def _upsert(tenant_id: int, items: Sequence[ItemInput]) -> tuple[UpsertResult, list[int]]:
    by_id = {item.external_id: item for item in items}
    existing = {
        row.external_id: row
        for row in Item.objects.select_for_update(no_key=True)
        .filter(tenant_id=tenant_id, external_id__in=list(by_id))
        .order_by("pk")
    }
    now = timezone.now()
    new_rows = [
        Item(
            tenant_id=tenant_id,
            external_id=item.external_id,
            title=item.title,
            description=item.description,
            categories=list(item.categories),
            attributes=item.attributes,
            available=item.available,
            content_hash=item.content_hash,
            encoding_status=EncodingStatus.PENDING,
        )
        for ext, item in by_id.items()
        if ext not in existing
    ]
    Item.objects.bulk_create(new_rows)
    to_encode = [row.pk for row in new_rows]
    changed: list[Item] = []
    metadata: list[tuple[int, bool, Sequence[str]]] = []
    for ext, row in existing.items():
        item = by_id[ext]
        new_hash = item.content_hash
        same = (
            row.title == item.title
            and row.description == item.description
            and list(row.categories) == list(item.categories)
            and row.attributes == item.attributes
            and row.available == item.available
        )
        if same and row.encoding_status != EncodingStatus.FAILED:
            continue
        if row.available != item.available or list(row.categories) != list(item.categories):
            metadata.append((row.pk, item.available, item.categories))
        row.title, row.description = item.title, item.description
        row.categories, row.attributes, row.available = list(item.categories), item.attributes, item.available
        row.updated_at = now
        if row.encoded_hash and new_hash == row.encoded_hash and row.encoding_status != EncodingStatus.FAILED:
            row.encoding_status = EncodingStatus.READY  # back to text whose vector is stored
        elif new_hash != row.content_hash or row.encoding_status == EncodingStatus.FAILED:
            row.encoding_status = EncodingStatus.PENDING
            row.encoding_error = ""
            to_encode.append(row.pk)
        row.content_hash = new_hash
        changed.append(row)
    if changed:
        Item.objects.bulk_update(changed, _UPDATE_FIELDS, batch_size=500)
    vectors_sync_metadata(tenant_id=tenant_id, rows=metadata)
    unchanged = len(existing) - len(changed)
    return UpsertResult(len(items), len(new_rows), len(changed), unchanged, len(to_encode)), to_encode


def item_delete(*, tenant_id: int, external_id: str) -> None:
    """Delete the item and (by foreign-key cascade) its content vector; NotFound if there is none."""
    with tenant_context(tenant_id):
        deleted, _ = Item.objects.filter(tenant_id=tenant_id, external_id=external_id).delete()
    if not deleted:
        raise NotFound(f"no item with id {external_id!r}")


def encode_batch_size() -> int:
    return sotto().catalog_encode_batch


def encoding_enqueue(*, tenant_id: int, item_pks: Sequence[int]) -> int:
    """Queue encode tasks (one per batch) on the encode queue; returns how many tasks were sent.

    Call it after commit (``transaction.on_commit``): the worker must see the rows.
    """
    from apps.catalog.tasks import encode_items

    size = encode_batch_size()
    pks = sorted({int(pk) for pk in item_pks})
    sent = 0
    for start in range(0, len(pks), size):
        encode_items.delay(int(tenant_id), pks[start : start + size])
        sent += 1
    return sent


def encoding_requeue(*, tenant_id: int, include_failed: bool = True) -> int:
    """Queue again every item not encoded at its current content (lost tasks, failures); returns items queued."""
    statuses = [EncodingStatus.PENDING] + ([EncodingStatus.FAILED] if include_failed else [])
    with tenant_context(tenant_id):
        pks = list(
            Item.objects.filter(tenant_id=tenant_id, encoding_status__in=statuses)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if include_failed:
            Item.objects.filter(pk__in=pks, encoding_status=EncodingStatus.FAILED).update(
                encoding_status=EncodingStatus.PENDING, encoding_error=""
            )
        transaction.on_commit(lambda: encoding_enqueue(tenant_id=tenant_id, item_pks=pks), robust=True)
    return len(pks)


def items_encode(*, tenant_id: int, item_pks: Sequence[int]) -> EncodeOutcome:
    """Encode the given items that still need it; vectors and statuses commit together per call.

    The forward pass runs outside any transaction; the write transaction re-locks the items and
    stores a vector only if the item still has the content that was encoded (a newer edit has
    queued its own task). Then ``on_item_vectors_ready`` hooks run in that same transaction.
    """
    from apps.catalog.encoding import encoder_for_tenant

    with tenant_context(tenant_id):
        rows = list(
            Item.objects.filter(tenant_id=tenant_id, pk__in=list(item_pks)).values(
                "pk",
                "external_id",
                "title",
                "description",
                "categories",
                "content_hash",
                "encoded_hash",
                "encoding_status",
            )
        )
    todo = [
        r
        for r in rows
        if not (r["encoding_status"] == EncodingStatus.READY and r["encoded_hash"] == r["content_hash"])
    ]
    if not todo:
        return EncodeOutcome(encoded=0, skipped=len(item_pks))
    encoder = encoder_for_tenant(tenant_id)
    texts = [content_text(r["title"], r["categories"], r["description"]) for r in todo]
    result = encoder.encode(texts)
    model_id = encoder.model_id
    with tenant_context(tenant_id):
        current = {
            r["pk"]: r
            for r in Item.objects.select_for_update(no_key=True)
            .filter(tenant_id=tenant_id, pk__in=[r["pk"] for r in todo])
            .order_by("pk")
            .values("pk", "content_hash", "available", "categories")
        }
        vector_rows: list[VectorRow] = []
        truncated: list[int] = []
        for row, text, vector, cut in zip(todo, texts, result.vectors, result.truncated, strict=True):
            now_row = current.get(row["pk"])
            if now_row is None or now_row["content_hash"] != row["content_hash"]:
                continue  # deleted, or edited since: the edit queued its own task
            vector_rows.append(
                VectorRow(
                    item_pk=row["pk"],
                    external_id=row["external_id"],
                    vector=vector,
                    available=now_row["available"],
                    categories=now_row["categories"],
                    model=model_id,
                    content_hash=content_hash(text),
                )
            )
            if cut:
                truncated.append(row["pk"])
        if vector_rows:
            vector_partition_create(tenant_id)  # created with the tenant; this only guards old tenants
            vectors_write(tenant_id=tenant_id, rows=vector_rows)
            done = [r.item_pk for r in vector_rows]
            now = timezone.now()
            for pks, cut_flag in (([p for p in done if p not in set(truncated)], False), (truncated, True)):
                if pks:
                    Item.objects.filter(pk__in=pks).update(
                        encoding_status=EncodingStatus.READY,
                        encoding_model=model_id,
                        encoding_truncated=cut_flag,
                        encoding_error="",
                        encoding_updated_at=now,
                        encoded_hash=F("content_hash"),
                    )
            run_item_vectors_ready(tenant_id, done)
    return EncodeOutcome(encoded=len(vector_rows), skipped=len(item_pks) - len(vector_rows))


def items_mark_failed(*, tenant_id: int, item_pks: Sequence[int], error: str) -> int:
    """Record that encoding these items failed for good (after retries); items already ready stay ready."""
    with tenant_context(tenant_id):
        return (
            Item.objects.filter(tenant_id=tenant_id, pk__in=list(item_pks))
            .exclude(encoding_status=EncodingStatus.READY)
            .update(
                encoding_status=EncodingStatus.FAILED,
                encoding_error=error[:500],
                encoding_updated_at=timezone.now(),
            )
        )

"""Encoding tasks (queue ``encode``: every ``sotto.catalog.*`` task is routed there)."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from apps.catalog.encoder import EncoderConfigError
from apps.catalog.services import items_encode, items_mark_failed

log = logging.getLogger(__name__)

MAX_RETRIES = 3


@shared_task(
    name="sotto.catalog.encode_items",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=MAX_RETRIES,
    soft_time_limit=600,
    time_limit=660,
)
def encode_items(self: Any, tenant_id: int, item_pks: list[int]) -> dict[str, int]:
    """Encode one batch of a tenant's items; safe to run twice (see ``services.items_encode``).

    A bad model configuration fails the batch at once (retrying cannot help); any other error is
    retried with backoff, and after ``MAX_RETRIES`` the items are marked failed with the reason.
    """
    try:
        outcome = items_encode(tenant_id=tenant_id, item_pks=item_pks)
    except EncoderConfigError as exc:
        log.error("encoder misconfigured for tenant %s: %s", tenant_id, exc)
        items_mark_failed(tenant_id=tenant_id, item_pks=item_pks, error=f"encoder configuration: {exc}")
        return {"encoded": 0, "failed": len(item_pks)}
    except Exception as exc:
        if self.request.retries >= MAX_RETRIES:
            log.exception("encoding %d items of tenant %s failed for good", len(item_pks), tenant_id)
            items_mark_failed(tenant_id=tenant_id, item_pks=item_pks, error=f"{type(exc).__name__}: {exc}")
            return {"encoded": 0, "failed": len(item_pks)}
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    return {"encoded": outcome.encoded, "skipped": outcome.skipped}

"""Retention of interaction events: a beat task fans out one task per tenant (ids only, never user ids)."""

from __future__ import annotations

import logging

from celery import shared_task

from apps.profiles import services
from apps.tenancy.models import Tenant

logger = logging.getLogger(__name__)


@shared_task(name="sotto.profiles.apply_retention", acks_late=True, soft_time_limit=300, time_limit=360)
def apply_retention() -> int:
    """Queue :func:`apply_retention_tenant` for every tenant (beat runs this every 6 hours)."""
    tenant_ids = list(Tenant.objects.order_by("pk").values_list("pk", flat=True))
    for tenant_id in tenant_ids:
        apply_retention_tenant.apply_async(args=[tenant_id])
    return len(tenant_ids)


@shared_task(
    name="sotto.profiles.apply_retention_tenant",
    acks_late=True,
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 300,
)
def apply_retention_tenant(tenant_id: int) -> dict[str, int]:
    """Delete the tenant's events past retention, rebuild the affected states, fold stale pending events.

    Idempotent: a second run finds nothing older than the cut-off.
    """
    result = services.events_apply_retention(tenant_id=tenant_id)
    folded = services.events_fold_stale_pending(tenant_id=tenant_id)
    logger.info(
        "retention for tenant %s: %d events deleted, %d states rebuilt, %d pending folded",
        tenant_id,
        result.deleted,
        result.users_rebuilt,
        folded,
    )
    return {"deleted": result.deleted, "users_rebuilt": result.users_rebuilt, "pending_folded": folded}

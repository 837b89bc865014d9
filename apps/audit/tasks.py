"""Beat task: sign every chain's head hourly (schedule in ``config.schedules``)."""

from __future__ import annotations

from celery import shared_task

from apps.audit.services import audit_checkpoint_all


@shared_task(name="sotto.audit.checkpoint_all", acks_late=True, soft_time_limit=900, time_limit=960)
def checkpoint_all() -> dict[str, int]:
    """Idempotent: a chain whose head is already signed is skipped, so a re-run signs nothing twice."""
    return audit_checkpoint_all()

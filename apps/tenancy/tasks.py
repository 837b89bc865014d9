"""Background work for tenant keys: finish a rotation (re-wrap user keys, retire the old version)."""

from __future__ import annotations

from celery import shared_task

from apps.core.audit import SystemActor
from apps.tenancy import keyring

# Leave the worker's hard limit room: a rotation that runs out of time re-queues itself.
_SOFT_LIMIT_S = 1800
_WORK_FOR_S = 1500.0


@shared_task(
    name="sotto.tenancy.rewrap_user_keys",
    acks_late=True,
    soft_time_limit=_SOFT_LIMIT_S,
    time_limit=_SOFT_LIMIT_S + 60,
)
def rewrap_user_keys(tenant_id: int) -> bool:
    """Re-wrap every user key of the tenant under its active encryption key, then retire the old versions.

    Idempotent (a re-run finds nothing left to do); reads keep working throughout. Returns True when
    no retiring version is left; otherwise it has queued itself again to carry on.
    """
    done = keyring.rotation_complete(
        tenant_id=tenant_id, actor=SystemActor.TASK_REWRAP_USER_KEYS, deadline_s=_WORK_FOR_S
    )
    if not done:
        rewrap_user_keys.apply_async(args=[tenant_id], countdown=5)
    return done

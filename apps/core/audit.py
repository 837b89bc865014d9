"""The one door every sensitive action goes through to reach the audit chain.

Callers pass what happened; the audit app appends it to the tenant's hash chain inside the
caller's transaction, so the action and its record commit or fail together. ``apps.audit`` is
always installed; it is imported inside :func:`record` only because it sits above ``apps.core``
(it imports this module), the one import of ``apps.core`` that points upwards.

What happened is an :class:`AuditAction` and who did it a :class:`SystemActor` (or a composed
``user:``/``key:`` actor from :func:`user_actor`/:func:`key_actor`). Both are ``StrEnum``: each
member *is* its string, so stored events, hashes, JSON and exports are byte-identical.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class AuditAction(StrEnum):
    """Every action written to the audit chain; a closed set (``tests/core`` checks ``apps/``)."""

    API_KEY_CREATE = "api_key.create"
    API_KEY_REVOKE = "api_key.revoke"
    AUDIT_EXPORT = "audit.export"
    AUTH_LOGIN = "auth.login"
    AUTH_LOGIN_FAILED = "auth.login_failed"
    AUTH_LOGIN_REFUSED_LOCKED = "auth.login_refused_locked"
    AUTH_LOGOUT = "auth.logout"
    END_USER_ATTRIBUTES_REPLACE = "end_user.attributes.replace"
    END_USER_ERASE = "end_user.erase"
    END_USER_EXPORT = "end_user.export"
    END_USER_RECOMMENDATIONS_VIEW = "end_user.recommendations.view"
    EVENTS_RETENTION = "events.retention"
    KEYS_MASTER_REWRAP = "keys.master_rewrap"
    MEMBERSHIP_CREATE = "membership.create"
    MEMBERSHIP_DELETE = "membership.delete"
    MEMBERSHIP_UPDATE = "membership.update"
    MODEL_ACTIVATE = "model.activate"
    MODEL_ACTIVATE_FAILED = "model.activate.failed"
    MODEL_ACTIVATE_REQUESTED = "model.activate.requested"
    MODEL_REJECT = "model.reject"
    MODEL_ROLLBACK = "model.rollback"
    POPULARITY_RELEASE = "popularity.release"
    PRIVACY_BUDGET_REFUND = "privacy_budget.refund"
    PRIVACY_BUDGET_SET = "privacy.budget.set"
    RETRAINING_REFUSED = "retraining.refused"
    RETRAINING_SCHEDULE_SET = "retraining.schedule.set"
    SLO_ALERT_CLEAR = "slo.alert.clear"
    SLO_ALERT_RAISE = "slo.alert.raise"
    SLO_OBJECTIVE_RESET = "slo.objective.reset"
    SLO_OBJECTIVE_SET = "slo.objective.set"
    TENANT_CREATE = "tenant.create"
    TENANT_KEY_RETIRE = "tenant_key.retire"
    TENANT_KEY_ROTATE = "tenant_key.rotate"
    TENANT_SETTINGS_UPDATE = "tenant.settings.update"
    TRAINING_RUN_FAILED = "training_run.failed"
    TRAINING_RUN_START = "training_run.start"


class SystemActor(StrEnum):
    """The fixed actors: the platform itself, its scheduled/background tasks, and the anonymous caller."""

    SYSTEM = "system"
    ANONYMOUS = "anonymous"
    SLO_ALERTS = "system:slo"
    RETRAINING_SCHEDULE = "schedule:retraining"
    TASK_APPLY_RETENTION = "task:apply_retention"
    TASK_REWRAP_USER_KEYS = "task:rewrap_user_keys"
    # the training-run reaper (``reap_stale_runs`` beat task -> ``training_runs_reap``)
    TASK_MODELING = "task:modeling"
    # the Celery train task itself (its own failures and a redelivered message of a lost worker)
    TASK_MODELING_TRAIN = "task:modeling.train"
    # the activation reaper (``activations_reap``)
    TASK_MODELING_REAP = "task:modeling.reap"


def user_actor(username: str) -> str:
    """The actor of a signed-in person: ``user:<username>``."""
    return f"user:{username}"


def key_actor(prefix: str) -> str:
    """The actor of an API key: ``key:<prefix>``."""
    return f"key:{prefix}"


def record(
    *,
    tenant_id: int | None,
    actor: str,
    action: AuditAction | str,
    target_type: str = "",
    target_id: str = "",
    details: dict[str, Any] | None = None,
) -> None:
    from apps.audit.services import audit_append

    audit_append(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target_type,
        target_id=target_id,
        details=details or {},
    )

"""The model lifecycle a tenant admin runs: scheduled retraining and activating any stored version.

What callers may rely on:

- A retraining schedule must fit the budget policy it runs under, checked whenever either
  changes (``schedule_fits``): with a lifetime budget any recurring schedule would exhaust it, so
  it is refused; with a renewal window of D days the runs a cadence can start in D days, times ε
  per run, must not exceed the window's ε. Refusals are ``DomainError`` (400) with the reason.
- ``retrain_due`` (beat, every ``MODELING_RETRAIN_CHECK_S``) starts each due tenant's run through
  ``services.training_run_start`` (charged and gated as any run) with the schedule row locked in
  the same transaction, so a duplicate beat message cannot charge twice. A refused start is kept
  in ``last_error`` (the admin's alert) and audited; the cadence still applies to the next try.
- ``model_version_activate`` points serving at any stored version: at once when its served
  vectors exist (the active and the previous version), otherwise after a worker re-materialises
  them from the version's checksummed arrays (``sotto.modeling.activate_version``, 202). Activating
  a version the gate rejected is an explicit override, audited as such.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.conf import sotto
from apps.core.errors import Conflict, DomainError, ErrorCode, NotFound
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.modeling import artifacts, served, tenant_data
from apps.modeling.ml.features import feature_config
from apps.modeling.models import (
    ActiveModel,
    Cadence,
    ModelVersion,
    PrivacyBudget,
    RetrainSchedule,
    RunStatus,
    TrainingRun,
    VersionStatus,
)

log = logging.getLogger(__name__)

SCHEDULE_ACTOR = SystemActor.RETRAINING_SCHEDULE
_PERIOD = {
    Cadence.DAILY: timedelta(days=1),
    Cadence.WEEKLY: timedelta(days=7),
    Cadence.EVENTS: timedelta(days=1),
}


# --- retraining schedule -----------------------------------------------------------------------------


def runs_per_window(cadence: str, renewal_days: int) -> int:
    """Most scheduled runs a cadence can start in any ``renewal_days`` window ("events" runs at most daily)."""
    period = _PERIOD.get(Cadence(cadence))
    if period is None:
        return 0
    return math.ceil(renewal_days / period.days)


def schedule_fits(*, cadence: str, epsilon_per_run: float, budget: PrivacyBudget | None) -> None:
    """``DomainError`` (400) when the schedule would exceed the budget policy (see the module docstring)."""
    if cadence == Cadence.OFF:
        return
    total = budget.epsilon_total if budget else sotto().default_epsilon_total
    days = budget.renewal_days if budget else None
    if days is None:
        raise DomainError(
            f"a {cadence} schedule would exhaust a lifetime budget of ε {total:g}; set a renewal window "
            "(renewal_days) on the privacy budget first, or start runs by hand",
            code=ErrorCode.SCHEDULE_EXCEEDS_BUDGET,
            details={"cadence": cadence, "renewal_days": None},
        )
    runs = runs_per_window(cadence, days)
    if runs * epsilon_per_run > total + 1e-9:
        raise DomainError(
            f"a {cadence} schedule starts up to {runs} runs in any {days}-day window: {runs} × ε {epsilon_per_run:g} = "
            f"{runs * epsilon_per_run:g} is above the window's budget of ε {total:g}",
            code=ErrorCode.SCHEDULE_EXCEEDS_BUDGET,
            details={
                "cadence": cadence,
                "runs_per_window": runs,
                "epsilon_per_run": epsilon_per_run,
                "epsilon_total": total,
                "renewal_days": days,
            },
        )


def parse_cadence(raw: Any) -> str:
    if not isinstance(raw, str) or raw not in Cadence.values:
        raise DomainError(
            f"cadence must be one of {Cadence.values}", details={"cadence": f"one of {Cadence.values}"}
        )
    return raw


def parse_min_new_events(raw: Any) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= 10**9:
        raise DomainError(
            "min_new_events must be null or a whole number in [1, 1e9]",
            details={"min_new_events": "null or a positive integer"},
        )
    return int(raw)


def schedule_locked(tenant_id: int) -> RetrainSchedule:
    """The schedule row, locked (created if missing). Schedule before budget, everywhere: no deadlock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO modeling_retrainschedule (tenant_id, cadence, epsilon_per_run, updated_at, last_event_id, "
            "last_error) VALUES (%s, 'off', 1.0, now(), 0, '') ON CONFLICT (tenant_id) DO NOTHING",
            [int(tenant_id)],
        )
    return RetrainSchedule.objects.select_for_update().get(tenant_id=tenant_id)


def retrain_schedule_get(*, tenant_id: int) -> dict[str, Any]:
    with tenant_context(tenant_id):
        row = RetrainSchedule.objects.filter(tenant_id=tenant_id).first()
        found = (
            (
                TrainingRun.objects.filter(tenant_id=tenant_id, pk=row.last_run_id)
                .values("id", "status", "error")
                .first()
            )
            if row and row.last_run_id
            else None
        )
    return schedule_repr(row, dict(found) if found else None)


def schedule_repr(row: RetrainSchedule | None, last_run: dict[str, Any] | None = None) -> dict[str, Any]:
    if row is None:
        return {
            "cadence": "off",
            "epsilon_per_run": 1.0,
            "min_new_events": None,
            "last_attempt_at": None,
            "last_run": None,
            "alert": None,
        }
    alert = None
    if row.last_error:
        alert = {"at": row.last_error_at, "message": row.last_error}
    elif last_run and last_run["status"] in (RunStatus.FAILED, RunStatus.REJECTED):
        alert = {
            "at": row.last_attempt_at,
            "message": f"scheduled run #{last_run['id']} {last_run['status']}: {last_run['error']}",
        }
    return {
        "cadence": row.cadence,
        "epsilon_per_run": row.epsilon_per_run,
        "min_new_events": row.min_new_events,
        "last_attempt_at": row.last_attempt_at,
        "last_run": last_run,
        "alert": alert,
    }


def retrain_schedule_set(
    *,
    tenant_id: int,
    actor: str,
    cadence: Any = None,
    epsilon_per_run: Any = None,
    min_new_events: Any = ...,
) -> dict[str, Any]:
    """Change the schedule (fields left ``None``/``...`` stay); refused (400) if it would exceed the budget."""
    from apps.modeling.budget import parse_epsilon

    cad = None if cadence is None else parse_cadence(cadence)
    eps = None if epsilon_per_run is None else parse_epsilon(epsilon_per_run, name="epsilon_per_run")
    floor = ... if min_new_events is ... else parse_min_new_events(min_new_events)
    with tenant_context(tenant_id):
        row = schedule_locked(tenant_id)
        before = {
            "cadence": row.cadence,
            "epsilon_per_run": repr(row.epsilon_per_run),
            "min_new_events": row.min_new_events,
        }
        if cad is not None:
            row.cadence = cad
        if eps is not None:
            row.epsilon_per_run = eps
        if floor is not ...:
            row.min_new_events = floor
        if row.cadence == Cadence.EVENTS and not row.min_new_events:
            raise DomainError(
                'cadence "events" needs min_new_events', details={"min_new_events": "is required"}
            )
        budget = PrivacyBudget.objects.select_for_update().filter(tenant_id=tenant_id).first()
        schedule_fits(cadence=row.cadence, epsilon_per_run=row.epsilon_per_run, budget=budget)
        row.updated_at = timezone.now()
        row.last_error, row.last_error_at = "", None  # a new schedule clears the old alert
        row.save()
        after = {
            "cadence": row.cadence,
            "epsilon_per_run": repr(row.epsilon_per_run),
            "min_new_events": row.min_new_events,
        }
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.RETRAINING_SCHEDULE_SET,
            target_type="tenant",
            target_id=str(tenant_id),
            details={**after, "previous": before},
        )
    return schedule_repr(row)


def schedule_check(tenant_id: int) -> Any:
    """A ``privacy_budget_set`` check: the tenant's current schedule must still fit the new policy."""

    def check(budget: PrivacyBudget) -> None:
        row = RetrainSchedule.objects.filter(tenant_id=tenant_id).first()
        if row is not None:
            schedule_fits(cadence=row.cadence, epsilon_per_run=row.epsilon_per_run, budget=budget)

    return check


def _newest_event_id(tenant_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(max(id), 0) FROM profiles_userevent WHERE tenant_id = %s", [int(tenant_id)]
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _new_events(tenant_id: int, after_id: int, limit: int) -> int:
    """New events since ``after_id``, counted up to ``limit`` (enough to decide)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM (SELECT 1 FROM profiles_userevent WHERE tenant_id = %s AND id > %s "
            "LIMIT %s) AS new",
            [int(tenant_id), int(after_id), int(limit)],
        )
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _due(row: RetrainSchedule, now: datetime) -> bool:
    period = _PERIOD.get(Cadence(row.cadence))
    if period is None:
        return False
    # never early: the attempt time is taken after the charge, so two scheduled charges are at least
    # a period apart and the fit check's count (ceil(D / period) in any D-day window) holds
    if row.last_attempt_at is not None and now - row.last_attempt_at < period:
        return False
    if row.cadence == Cadence.EVENTS:
        need = int(row.min_new_events or 1)
        return _new_events(row.tenant_id, row.last_event_id, need) >= need
    return True


def retrain_due(*, now: datetime | None = None) -> dict[str, int]:
    """Start the runs that are due (beat task); returns how many started and were refused."""
    from apps.modeling.services import training_run_start

    now = now or timezone.now()
    with dangerously_as_platform():
        tenants = list(
            RetrainSchedule.objects.exclude(cadence=Cadence.OFF).values_list("tenant_id", flat=True)
        )
    started = refused = 0
    for tenant_id in tenants:
        with tenant_context(tenant_id):
            row = RetrainSchedule.objects.select_for_update().filter(tenant_id=tenant_id).first()
            if row is None or not _due(row, now):
                continue
            busy = TrainingRun.objects.filter(
                tenant_id=tenant_id, status__in=[RunStatus.QUEUED, RunStatus.RUNNING]
            ).exists()
            if busy:
                continue  # the next tick tries again; never two runs of one tenant at once
            row.last_event_id = _newest_event_id(tenant_id)
            try:
                with transaction.atomic():
                    run = training_run_start(
                        tenant_id=tenant_id, epsilon=row.epsilon_per_run, actor=SCHEDULE_ACTOR
                    )
            except Exception as exc:  # one tenant's bad settings must not stop every tenant after it
                refused += 1
                code, message = (
                    (exc.code, exc.message) if isinstance(exc, DomainError) else (ErrorCode.ERROR, str(exc))
                )
                if not isinstance(exc, DomainError):
                    log.exception("scheduled retraining of tenant %s failed to start", tenant_id)
                row.last_error, row.last_error_at = f"scheduled run not started: {message}"[:1000], now
                audit.record(
                    tenant_id=tenant_id,
                    actor=SCHEDULE_ACTOR,
                    action=AuditAction.RETRAINING_REFUSED,
                    target_type="tenant",
                    target_id=str(tenant_id),
                    details={"code": code, "reason": message[:200]},
                )
            else:
                started += 1
                row.last_run_id, row.last_error, row.last_error_at = run["id"], "", None
            row.last_attempt_at = max(now, timezone.now())
            row.save()
    return {"started": started, "refused": refused}


# --- versions ------------------------------------------------------------------------------------------


def point_at(
    tenant_id: int, target: int, *, actor: str, action: AuditAction, details: dict[str, Any]
) -> dict[str, Any]:
    """Make ``target`` (whose served vectors exist) active, the active one previous, an older previous
    retired (its leaf is dropped by ``retire_leaves``); audited. The one pointer switch: a training
    run's, an activation's and a rollback's. Caller's tenant-scoped transaction."""
    with connection.cursor() as cursor:  # the tenant's first pointer, race-free against a concurrent switch
        cursor.execute(
            "INSERT INTO modeling_activemodel (tenant_id, version, previous_version, switched_at) "
            "VALUES (%s, %s, NULL, now()) ON CONFLICT (tenant_id) DO NOTHING RETURNING version",
            [int(tenant_id), int(target)],
        )
        created = cursor.fetchone() is not None
    pointer = ActiveModel.objects.select_for_update().get(tenant_id=tenant_id)
    now = timezone.now()
    current = None if created else pointer.version
    ModelVersion.objects.filter(tenant_id=tenant_id, status=VersionStatus.PREVIOUS).exclude(
        version=target
    ).update(status=VersionStatus.RETIRED)
    if current is not None and current != target:
        ModelVersion.objects.filter(tenant_id=tenant_id, version=current).update(
            status=VersionStatus.PREVIOUS
        )
    ModelVersion.objects.filter(tenant_id=tenant_id, version=target).update(
        status=VersionStatus.ACTIVE, activated_at=now
    )
    if not created:
        pointer.version, pointer.previous_version, pointer.switched_at = target, current, now
        pointer.save(update_fields=["version", "previous_version", "switched_at"])
    audit.record(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type="model_version",
        target_id=str(target),
        details={"from": current, **details},
    )
    return {"version": target, "previous_version": current, "status": "active"}


def retire_leaves(tenant_id: int) -> None:
    """Drop the served vectors of retired versions (everything but the active and the previous one)."""
    with tenant_context(tenant_id):
        retired = list(
            ModelVersion.objects.filter(tenant_id=tenant_id, status=VersionStatus.RETIRED).values_list(
                "version", flat=True
            )
        )
    for version in retired:
        with tenant_context(tenant_id):
            # re-checked under the row lock: an activation may have brought it back meanwhile
            still = (
                ModelVersion.objects.select_for_update()
                .filter(tenant_id=tenant_id, version=version, status=VersionStatus.RETIRED)
                .exists()
            )
            if still and served.version_exists(tenant_id=tenant_id, version=version):
                served.version_drop(tenant_id=tenant_id, version=version)


def model_rollback(*, tenant_id: int, actor: str) -> dict[str, Any]:
    """Serve the previous version again (its vectors are kept for exactly this); a second call rolls
    forward. ``Conflict`` when there is nothing to roll back to."""
    with tenant_context(tenant_id):
        pointer = ActiveModel.objects.select_for_update().filter(tenant_id=tenant_id).first()
        if pointer is None or pointer.previous_version is None:
            raise Conflict(
                "there is no previous model version to roll back to", code=ErrorCode.NO_PREVIOUS_VERSION
            )
        target = pointer.previous_version
        if not served.version_exists(tenant_id=tenant_id, version=target):
            raise Conflict(
                f"the served vectors of version {target} are gone", code=ErrorCode.NO_PREVIOUS_VERSION
            )
        return point_at(tenant_id, target, actor=actor, action=AuditAction.MODEL_ROLLBACK, details={})


def _override(mv: ModelVersion) -> dict[str, Any]:
    gate = (
        TrainingRun.objects.filter(tenant_id=mv.tenant_id, pk=mv.run_id)
        .values_list("gate", flat=True)
        .first()
        if mv.run_id
        else None
    ) or {}
    return {"gate_override": True, "gate_reason": gate.get("reason")} if gate.get("passed") is False else {}


def model_version_activate(*, tenant_id: int, version: Any, actor: str) -> tuple[dict[str, Any], bool]:
    """Point serving at ``version``; returns (state, done now). See the module docstring."""
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise DomainError("version must be a positive integer", details={"version": "a positive integer"})
    with tenant_context(tenant_id):
        mv = ModelVersion.objects.select_for_update().filter(tenant_id=tenant_id, version=version).first()
        if mv is None:
            raise NotFound(f"no model version {version}")
        if mv.status == VersionStatus.ACTIVE:
            raise Conflict(f"version {version} is already active", code=ErrorCode.ALREADY_ACTIVE)
        if mv.status in (VersionStatus.MATERIALISING, VersionStatus.FAILED, VersionStatus.READY):
            raise Conflict(
                f"version {version} is {mv.status} and cannot be activated",
                code=ErrorCode.NOT_ACTIVATABLE,
                details={"status": mv.status},
            )
        if mv.feature_config != artifacts.feature_config_to_json(feature_config()):
            raise Conflict(
                f"version {version} was trained with another user-feature layout than this deployment's; "
                "user states cannot feed it",
                code=ErrorCode.NOT_ACTIVATABLE,
            )
        details = {**_override(mv), "checksum": mv.checksum}
        if served.version_exists(tenant_id=tenant_id, version=version):
            state = point_at(
                tenant_id, version, actor=actor, action=AuditAction.MODEL_ACTIVATE, details=details
            )
            transaction.on_commit(functools.partial(retire_leaves, tenant_id), robust=True)
            return state, True
        restore = mv.status
        mv.status, mv.activation_requested_at, mv.activation_restore = (
            VersionStatus.MATERIALISING,
            timezone.now(),
            restore,
        )
        mv.save(update_fields=["status", "activation_requested_at", "activation_restore"])
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.MODEL_ACTIVATE_REQUESTED,
            target_type="model_version",
            target_id=str(version),
            details={**details, "from_status": restore},
        )
        transaction.on_commit(
            functools.partial(_enqueue_activation, tenant_id, version, actor, restore), robust=True
        )
    return {"version": version, "status": "materialising"}, False


def _enqueue_activation(tenant_id: int, version: int, actor: str, restore: str) -> None:
    from apps.modeling.run_config import training_queue
    from apps.modeling.tasks import activate_version

    activate_version.apply_async(args=[int(tenant_id), int(version), actor, restore], queue=training_queue())


def top_up_served(
    tenant_id: int,
    version: int,
    weights: dict[str, np.ndarray],
    extras_for: Callable[[list[int]], np.ndarray],
) -> None:
    """Served vectors for items encoded while the leaf was built (the encode hook missed them);
    ``extras_for`` gives their extras rows (the version's cold row: they have no released count)."""
    from apps.catalog.selectors import content_vectors
    from apps.modeling.ml.inference import item_vectors

    missing = served.missing_item_pks(tenant_id=tenant_id, version=version)
    vecs = content_vectors(tenant_id, missing) if missing else {}
    pks = sorted(vecs)
    if pks:
        content = np.stack([vecs[p] for p in pks]).astype(np.float32)
        served.vectors_upsert(
            tenant_id=tenant_id,
            version=version,
            item_pks=pks,
            vectors=item_vectors(weights, content, extras_for(pks)),
        )


def model_version_materialise_and_activate(*, tenant_id: int, version: int, actor: str, restore: str) -> str:
    """Worker side of an activation: served vectors of every current item from the version's arrays,
    its HNSW index, then the switch. On failure the leaf is dropped and the version keeps ``restore``."""
    from apps.modeling.ml.inference import item_vectors

    with tenant_context(tenant_id):
        mv = ModelVersion.objects.filter(tenant_id=tenant_id, version=version).first()
        if mv is None or mv.status != VersionStatus.MATERIALISING:
            return "skipped"
        art = artifacts.load_artifacts(tenant_id, version)
        item_pks, content = tenant_data.items(tenant_id)
    try:
        vectors = item_vectors(art.weights, content, art.extras_for(item_pks.tolist()))
        with tenant_context(tenant_id):
            if not served.version_exists(tenant_id=tenant_id, version=version):
                served.version_create(tenant_id=tenant_id, version=version)
        with tenant_context(tenant_id):
            served.vectors_upsert(
                tenant_id=tenant_id, version=version, item_pks=item_pks.tolist(), vectors=vectors
            )
        with tenant_context(tenant_id):
            served.version_index(tenant_id=tenant_id, version=version, dim=int(vectors.shape[1]))
        with tenant_context(tenant_id):
            mv = ModelVersion.objects.select_for_update().get(tenant_id=tenant_id, version=version)
            if mv.status != VersionStatus.MATERIALISING:  # a duplicate delivery already switched it
                return "skipped"
            top_up_served(tenant_id, version, art.weights, art.extras_for)
            point_at(
                tenant_id,
                version,
                actor=actor,
                action=AuditAction.MODEL_ACTIVATE,
                details={**_override(mv), "checksum": mv.checksum, "rematerialised": True},
            )
    except Exception as exc:
        log.exception("activating version %s of tenant %s failed", version, tenant_id)
        with tenant_context(tenant_id):
            # only while it is still ours to build: never drop the leaf of a version that went live
            mine = (
                ModelVersion.objects.select_for_update()
                .filter(tenant_id=tenant_id, version=version, status=VersionStatus.MATERIALISING)
                .exists()
            )
            if mine:
                if served.version_exists(tenant_id=tenant_id, version=version):
                    served.version_drop(tenant_id=tenant_id, version=version)
                ModelVersion.objects.filter(tenant_id=tenant_id, version=version).update(status=restore)
                audit.record(
                    tenant_id=tenant_id,
                    actor=actor,
                    action=AuditAction.MODEL_ACTIVATE_FAILED,
                    target_type="model_version",
                    target_id=str(version),
                    details={"reason": str(exc)[:200]},
                )
        return "failed"
    retire_leaves(tenant_id)
    return "active"


ACTIVATION_STALE_AFTER = timedelta(seconds=3720 + 600)  # the task's hard time limit, and a margin


def activations_reap(*, now: datetime | None = None) -> int:
    """Give back versions whose re-materialisation never finished (worker killed, message lost):
    their half-built leaf is dropped and they return to the status they had; audited. Beat."""
    now = now or timezone.now()
    with dangerously_as_platform():
        stuck = list(
            ModelVersion.objects.filter(
                status=VersionStatus.MATERIALISING,
                activation_requested_at__lt=now - ACTIVATION_STALE_AFTER,
            ).values_list("tenant_id", "version")
        )
    reaped = 0
    for tenant_id, version in stuck:
        with tenant_context(tenant_id):
            mv = (
                ModelVersion.objects.select_for_update()
                .filter(
                    tenant_id=tenant_id,
                    version=version,
                    status=VersionStatus.MATERIALISING,
                    activation_requested_at__lt=now - ACTIVATION_STALE_AFTER,
                )
                .first()
            )
            if mv is None:
                continue
            if served.version_exists(tenant_id=tenant_id, version=version):
                served.version_drop(tenant_id=tenant_id, version=version)
            mv.status = mv.activation_restore or VersionStatus.RETIRED
            mv.save(update_fields=["status"])
            audit.record(
                tenant_id=tenant_id,
                actor=SystemActor.TASK_MODELING_REAP,
                action=AuditAction.MODEL_ACTIVATE_FAILED,
                target_type="model_version",
                target_id=str(version),
                details={"reason": "activation never finished (worker lost or message lost)"},
            )
            reaped += 1
    return reaped

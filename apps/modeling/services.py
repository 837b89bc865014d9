"""Training runs: charged and queued on request, reaped when their worker is lost, rolled back.

What callers may rely on:

- A training run is charged to the tenant's append-only ledger *before* it is computed
  (``ledger.ledger_charge``, the budget row locked), in the same transaction as its run row; a
  request that would exceed what remains, or that has too few users, is refused with ``Conflict``
  (409) and writes nothing; nothing is queued. δ of a run is ``min(tenant δ, 1/N_users)``.
- The run is queued on commit (``transaction.on_commit``) to the ``train`` queue; the worker side
  lives in ``apps.modeling.training`` (the only module that imports torch).
- Starts and failures are audited in the same transaction; a run that fails before releasing
  anything has its charge refunded (``ledger.training_run_failed_record``).
- Importing this module does not import torch.

The budget policy is ``apps.modeling.budget``, the ledger ``apps.modeling.ledger``, run
configuration ``apps.modeling.run_config``, popularity releases ``apps.modeling.popularity_release``
and the serving forward pass ``apps.modeling.interest``.
"""

from __future__ import annotations

import functools
import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.conf import sotto
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.modeling import tenant_data
from apps.modeling.budget import parse_epsilon
from apps.modeling.ledger import ledger_charge, training_run_failed_record
from apps.modeling.ml.designs import release_design
from apps.modeling.models import ReleaseKind, RunStatus, TrainingRun
from apps.modeling.run_config import run_config, training_queue
from apps.modeling.selectors import run_repr
from apps.tenancy.models import Tenant

log = logging.getLogger(__name__)

__all__ = ["active_model_rollback", "training_run_start", "training_runs_reap"]


def _enqueue(tenant_id: int, run_id: int) -> None:
    from apps.modeling.tasks import train

    train.apply_async(args=[int(tenant_id), int(run_id)], queue=training_queue())


def training_run_start(*, tenant_id: int, epsilon: Any, actor: str) -> dict[str, Any]:
    """Charge ε to the ledger and queue a DP training run; returns the run (``run_repr``).

    Refused (``Conflict``, nothing written, nothing queued) when ε exceeds what remains or too
    few users have events. δ = min(tenant δ, 1/N_users). The planned mechanism goes into the
    ledger entry's details (``ml.designs.ReleaseDesign.plan``).
    """
    eps = parse_epsilon(epsilon)
    with tenant_context(tenant_id):
        tenant_settings = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
        config = run_config(tenant_settings, eps, tenant_data.trainable_users(tenant_id))
        charge = ledger_charge(
            tenant_id=tenant_id,
            epsilon=eps,
            kind=ReleaseKind.TRAINING,
            actor=actor,
            min_users=sotto().modeling_min_users,
        )
        users, delta = charge.users, charge.delta
        fixed_seed = (tenant_settings or {}).get("modeling", {}).get("seed")
        seed = int(fixed_seed) if fixed_seed is not None else secrets.randbits(31)
        run = TrainingRun.objects.create(
            tenant_id=tenant_id,
            status=RunStatus.QUEUED,
            epsilon=eps,
            delta=delta,
            n_users=users,
            config=config,
            seed=seed,
            actor=actor[:200],
            epochs=int(config["epochs"]),
        )
        charge.record(run=run, details=release_design(config["dp_design"]).plan(config, eps, delta, users))
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.TRAINING_RUN_START,
            target_type="training_run",
            target_id=str(run.pk),
            details={
                "epsilon": repr(eps),
                "delta": repr(delta),
                "users": users,
                "epsilon_remaining_before": repr(charge.remaining),
            },
        )
        transaction.on_commit(lambda: _enqueue(tenant_id, run.pk), robust=True)
    return run_repr(run)


# --- stale runs ------------------------------------------------------------------------------------


def _mark_failed(tenant_id: int, run_id: int, reason: str, *, only_if: tuple[str, ...]) -> bool:
    """Fail the run, refund its charge (it released nothing) and drop any half-materialised version."""
    from apps.modeling.training import discard_versions_of_run

    with tenant_context(tenant_id):
        changed = TrainingRun.objects.filter(tenant_id=tenant_id, pk=run_id, status__in=only_if).update(
            status=RunStatus.FAILED, error=reason[:1000], finished_at=timezone.now()
        )
        if changed:
            training_run_failed_record(
                tenant_id=tenant_id, run_id=run_id, reason=reason, actor=SystemActor.TASK_MODELING
            )
    if changed:
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
    return bool(changed)


def training_runs_reap(
    *, now: datetime | None = None, stale_after_s: float | None = None, requeue_after_s: float | None = None
) -> dict[str, int]:
    """Fail runs whose worker died (no heartbeat for ``MODELING_STALE_AFTER_S``: "worker lost");
    re-send runs still queued after ``MODELING_REQUEUE_AFTER_S`` (a lost message; the task is
    idempotent, so a duplicate is harmless). A failed run's charge is refunded: it released nothing."""
    now = now or timezone.now()
    stale = timedelta(
        seconds=float(stale_after_s if stale_after_s is not None else sotto().modeling_stale_after_s)
    )
    requeue = timedelta(
        seconds=float(requeue_after_s if requeue_after_s is not None else sotto().modeling_requeue_after_s)
    )
    with dangerously_as_platform():
        running = list(
            TrainingRun.objects.filter(status=RunStatus.RUNNING).values_list(
                "tenant_id", "pk", "heartbeat_at", "started_at"
            )
        )
        # heartbeat_at of a queued run = when it was last re-sent
        queued = [
            (t, pk)
            for t, pk, sent, created in TrainingRun.objects.filter(status=RunStatus.QUEUED).values_list(
                "tenant_id", "pk", "heartbeat_at", "created_at"
            )
            if (sent or created) < now - requeue
        ]
    failed = 0
    for tenant_id, run_id, beat, started in running:
        last = beat or started
        if last is None or last < now - stale:
            seen = "never" if last is None else last.isoformat()
            failed += _mark_failed(
                tenant_id, run_id, f"worker lost: no heartbeat since {seen}", only_if=(RunStatus.RUNNING,)
            )
    for tenant_id, run_id in queued:
        with tenant_context(tenant_id):
            if TrainingRun.objects.filter(tenant_id=tenant_id, pk=run_id, status=RunStatus.QUEUED).update(
                heartbeat_at=now
            ):
                transaction.on_commit(functools.partial(_enqueue, tenant_id, run_id), robust=True)
    return {"failed": failed, "requeued": len(queued)}


# --- rollback ----------------------------------------------------------------------------------------


def active_model_rollback(*, tenant_id: int, actor: str) -> dict[str, Any]:
    """Serve the previous version again (``lifecycle.model_rollback``); a second call rolls forward."""
    from apps.modeling.lifecycle import model_rollback

    return model_rollback(tenant_id=tenant_id, actor=actor)

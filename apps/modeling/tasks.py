"""Modeling tasks. Every ``sotto.modeling.*`` task is routed to the ``train`` queue by name; the
reaper is scheduled on ``default`` (config/schedules.py) so a busy trainer cannot starve it."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

log = logging.getLogger(__name__)


@shared_task(
    name="sotto.modeling.train",
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 120,
)
def train(self: Any, tenant_id: int, run_id: int) -> str:
    """Train one charged run (``apps.modeling.training.training_run_execute``).

    At-least-once delivery is safe: a run trains at most once, a redelivered message for a run
    whose worker died marks it failed ("worker lost"), and nothing is ever charged here.
    """
    from apps.modeling.training import training_run_execute

    redelivered = bool((getattr(self.request, "delivery_info", None) or {}).get("redelivered"))
    return training_run_execute(tenant_id=tenant_id, run_id=run_id, redelivered=redelivered)


@shared_task(name="sotto.modeling.reap_stale_runs", acks_late=True, soft_time_limit=300, time_limit=360)
def reap_stale_runs() -> dict[str, int]:
    """Fail runs whose worker stopped beating; re-send runs whose message was lost; give back
    activations whose re-materialisation never finished."""
    from apps.modeling.lifecycle import activations_reap
    from apps.modeling.services import training_runs_reap

    outcome = training_runs_reap()
    outcome["activations_given_back"] = activations_reap()
    if outcome["failed"] or outcome["requeued"] or outcome["activations_given_back"]:
        log.info("modeling reaper: %s", outcome)
    return outcome


@shared_task(name="sotto.modeling.activate_version", acks_late=True, soft_time_limit=3600, time_limit=3720)
def activate_version(tenant_id: int, version: int, actor: str, restore: str) -> str:
    """Re-materialise a stored version's served vectors and switch to it (``lifecycle``)."""
    from apps.modeling.lifecycle import model_version_materialise_and_activate

    return model_version_materialise_and_activate(
        tenant_id=tenant_id, version=version, actor=actor, restore=restore
    )


@shared_task(name="sotto.modeling.retrain_due", acks_late=True, soft_time_limit=300, time_limit=360)
def retrain_due() -> dict[str, int]:
    """Start the scheduled runs that are due (each charged and gated as any run)."""
    from apps.modeling.lifecycle import retrain_due as start_due

    outcome = start_due()
    if outcome["started"] or outcome["refused"]:
        log.info("scheduled retraining: %s", outcome)
    return outcome

"""All periodic tasks in one place, so operators see the whole beat load at a glance."""

from __future__ import annotations

from typing import Any

from apps.core.conf import sotto


def beat_schedule() -> dict[str, dict[str, Any]]:
    prefix = sotto().queue_prefix
    schedule: dict[str, dict[str, Any]] = {}
    registered = {
        # name: (task, seconds, queue)
        "audit-checkpoint": ("sotto.audit.checkpoint_all", 3600.0, "default"),
        "profiles-retention": ("sotto.profiles.apply_retention", 6 * 3600.0, "default"),
        "slo-flush-and-alerts": ("sotto.slo.evaluate_alerts", 60.0, "default"),
        # on default, not train: a trainer busy for hours must not delay noticing a dead one
        "modeling-reap-stale-runs": ("sotto.modeling.reap_stale_runs", 60.0, "default"),
        # starts due scheduled runs (it only charges and queues; training itself is on train)
        "modeling-retrain-due": ("sotto.modeling.retrain_due", sotto().modeling_retrain_check_s, "default"),
    }
    from celery import current_app

    for name, (task, every, queue) in registered.items():
        if task in current_app.tasks:
            schedule[name] = {"task": task, "schedule": every, "options": {"queue": f"{prefix}{queue}"}}
    return schedule

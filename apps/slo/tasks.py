"""The SLO beat task: fold old minute rows into hours, then raise and clear burn-rate alerts."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from apps.slo.recorder import default_recorder
from apps.slo.services import slo_alerts_evaluate, slo_histograms_compact


@shared_task(name="sotto.slo.evaluate_alerts", acks_late=True, soft_time_limit=45, time_limit=55)
def evaluate_alerts() -> dict[str, Any]:
    """Every minute (``config.schedules``). Idempotent: a rerun folds nothing twice and raises or
    clears only alerts whose state differs from what the histograms say now."""
    default_recorder().flush()  # this worker's own task timings, so /metrics lags by at most a minute
    compaction = slo_histograms_compact()
    evaluation = slo_alerts_evaluate()
    return {
        "rolled_up_rows": compaction.rolled_up_rows,
        "deleted_rows": compaction.deleted_rows,
        "tenants": evaluation.tenants,
        "raised": evaluation.raised,
        "cleared": evaluation.cleared,
    }

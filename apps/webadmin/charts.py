"""The dashboard's chart data: plain JSON for ``static/webadmin/charts.js`` (Chart.js, vendored)."""

from __future__ import annotations

from typing import Any

from apps.webadmin import sources


def dashboard_charts(
    *,
    latency: list[sources.LatencySeries] | None,
    budgets: list[sources.ErrorBudget] | None,
    privacy: sources.PrivacyBudget | None,
    encoding: sources.EncodingProgress | None,
) -> dict[str, Any]:
    """Every chart the dashboard can draw from what ``sources`` read; one whose backend is absent is left out."""
    charts: dict[str, Any] = {}
    if latency:
        charts["latency"] = [latency_chart(s) for s in latency]
    if budgets:
        charts["error_budget"] = {
            "labels": [b.name for b in budgets],
            # None draws no bar: a class too quiet to judge is listed under the chart instead
            "remaining": [None if b.remaining is None else round(b.remaining * 100, 2) for b in budgets],
            "not_judged": list(
                dict.fromkeys(
                    b.name.rsplit(" ", 1)[0] + ": " + b.note for b in budgets if b.remaining is None
                )
            ),
        }
    if privacy is not None:
        charts["privacy"] = privacy_chart(privacy)
    if encoding is not None:
        charts["encoding"] = {"ready": encoding.ready, "pending": encoding.pending, "failed": encoding.failed}
    return charts


def latency_chart(s: sources.LatencySeries) -> dict[str, Any]:
    """One endpoint class's percentiles against its objective (the dashboard's and the objectives page's)."""
    return {
        "endpoint_class": s.endpoint_class,
        "labels": s.labels,
        "p50": s.p50,
        "p95": s.p95,
        "p99": s.p99,
        "objective_ms": s.objective_ms,
        "objective_percentile": s.objective_percentile,
        "requests": s.requests,
    }


def slo_charts(
    *, latency: list[sources.LatencySeries] | None, time_range: sources.TimeRange
) -> dict[str, Any]:
    """The objectives page's latency charts over ``time_range``: embedded in the page, and what
    ``slo/series.json?range=`` answers when a range button asks for another range."""
    return {
        "range": time_range.key,
        "ranges": list(sources.SLO_RANGES),
        "step_s": time_range.step_s,
        "latency": [latency_chart(s) for s in latency or []],
    }


def privacy_chart(budget: sources.PrivacyBudget) -> dict[str, Any]:
    """ε spent as a running total from 0, one point per training run (labelled with that run's ε)."""
    start: list[Any] = ["start"] if budget.points else []
    return {
        "total": budget.total,
        "labels": start + [p.label for p in budget.points],
        "spent": [0.0] * len(start) + [p.spent for p in budget.points],
        "runs": [None] * len(start) + [{"label": p.run_label, "epsilon": p.epsilon} for p in budget.points],
    }

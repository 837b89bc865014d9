"""Reads for the API, the web admin dashboard and the alert evaluator.

Every function takes ``tenant_id`` and runs inside ``tenant_context(tenant_id)`` (joining the
caller's transaction when there is one), so RLS guarantees no other tenant's rows are read.
Times are injectable (``now``) so tests and backfills need no sleeps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.core.conf import sotto
from apps.core.errors import DomainError
from apps.core.tenant_db import tenant_context
from apps.slo.endpoints import CLASSES
from apps.slo.models import SloAlert, SloObjective
from apps.slo.windows import WindowCounts, budget_remaining, clamp_budget

# The status windows the API and dashboard show (label, seconds); the last is the objective window.
STATUS_WINDOWS: tuple[tuple[str, int], ...] = (("1h", 3600), ("24h", 86400), ("28d", 28 * 86400))


def min_sample() -> int:
    """Requests (not throttled) a window needs before its objective is judged (``SLO_MIN_SAMPLE``).

    Below it a burn rate says more about chance than about the service: five requests with one
    cold start read as a budget overspent 49 times."""
    return max(1, sotto().slo_min_sample)


def not_enough_traffic(sample: int, needed: int) -> str:
    """What the API and the admin say instead of a burn rate or a budget below the minimum sample."""
    return f"not enough traffic yet ({sample} of {needed} requests)"


@dataclass(frozen=True)
class Objective:
    endpoint_class: str
    latency_threshold_ms: float
    latency_target: float
    availability_target: float
    is_default: bool
    updated_at: datetime | None = None
    updated_by: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated_at"] = self.updated_at.isoformat() if self.updated_at else None
        return out


def default_objective(endpoint_class: str) -> Objective:
    spec = sotto().slo_defaults[endpoint_class]
    return Objective(
        endpoint_class=endpoint_class,
        latency_threshold_ms=spec.latency_threshold_ms,
        latency_target=spec.latency_target,
        availability_target=spec.availability_target,
        is_default=True,
    )


def slo_objectives_for_tenant(*, tenant_id: int) -> dict[str, Objective]:
    """The tenant's objective for every endpoint class (its own where set, else the default)."""
    out = {cls: default_objective(cls) for cls in CLASSES}
    with tenant_context(tenant_id):
        for row in SloObjective.objects.filter(tenant_id=tenant_id):
            if row.endpoint_class in out:
                out[row.endpoint_class] = Objective(
                    endpoint_class=row.endpoint_class,
                    latency_threshold_ms=row.latency_threshold_ms,
                    latency_target=row.latency_target,
                    availability_target=row.availability_target,
                    is_default=False,
                    updated_at=row.updated_at,
                    updated_by=row.updated_by,
                )
    return out


# --- window aggregation ------------------------------------------------------------------------


def window_counts(
    *, tenant_id: int, now: datetime, windows_s: Sequence[int], endpoint_class: str | None = None
) -> list[dict[str, WindowCounts]]:
    """Bucket counts per endpoint class for each window ``[now - w, now)``, in one query.

    Minute rows are exact; windows reaching back past ``SLO_MINUTE_RETENTION_H`` read hour rows,
    so their far edge is rounded to whole hours.
    """
    if not windows_s:
        return []
    starts = [now - timedelta(seconds=w) for w in windows_s]
    filters = ", ".join(f"SUM(u.c) FILTER (WHERE h.start >= %(s{i})s)" for i in range(len(starts)))
    params: dict[str, Any] = {f"s{i}": start for i, start in enumerate(starts)}
    params.update({"tenant": tenant_id, "from": min(starts), "now": now, "cls": endpoint_class})
    sql = f"""
        SELECT h.endpoint_class, h.status_class, u.i - 1, {filters}
        FROM slo_latencyhistogram h CROSS JOIN LATERAL unnest(h.counts) WITH ORDINALITY AS u(c, i)
        WHERE h.tenant_id = %(tenant)s AND h.start >= %(from)s AND h.start < %(now)s AND u.c <> 0
          AND (%(cls)s::text IS NULL OR h.endpoint_class = %(cls)s::text)
        GROUP BY 1, 2, 3
    """  # noqa: S608 # nosec B608 - only the FILTER columns are composed, from our own integers
    out: list[dict[str, WindowCounts]] = [{} for _ in starts]
    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute(sql, params)
        for row in cursor.fetchall():
            cls, status_class, bucket = row[0], row[1], int(row[2])
            for i, value in enumerate(row[3:]):
                if value:
                    out[i].setdefault(cls, WindowCounts()).add(status_class, bucket, int(value))
    return out


# --- status ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowStatus:
    window: str
    seconds: int
    requests: int
    served: int
    errors: int
    throttled: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    share_good: float | None
    availability: float | None
    latency_burn_rate: float | None  # None while not judged (or with nothing to judge)
    availability_burn_rate: float | None
    judged: bool = True  # at least ``SLO_MIN_SAMPLE`` requests not throttled


# What a class's objective comes to over the objective window (``ClassStatus.verdict``).
NOT_ENOUGH_TRAFFIC, MEETS, BUDGET_EXHAUSTED = "not_enough_traffic", "meets", "budget_exhausted"


@dataclass(frozen=True)
class ClassStatus:
    """One class over the objective window. Budgets are None until ``judged``; when judged they
    are bounded to [-1, 1] (``windows.clamp_budget``), with the unbounded figure in ``*_raw``."""

    endpoint_class: str
    objective: Objective
    windows: dict[str, WindowStatus]
    latency_budget_remaining: float | None
    availability_budget_remaining: float | None
    meets_objective: bool | None
    judged: bool = True
    sample: int = 0  # requests not throttled over the objective window
    min_sample: int = 1
    verdict: str = MEETS
    summary: str = ""
    latency_budget_remaining_raw: float | None = None
    availability_budget_remaining_raw: float | None = None


@dataclass(frozen=True)
class AlertView:
    id: int
    endpoint_class: str
    sli: str
    severity: str
    factor: float
    burn_long: float
    burn_short: float
    long_window_s: int
    short_window_s: int
    raised_at: datetime
    cleared_at: datetime | None

    @classmethod
    def of(cls, alert: SloAlert) -> AlertView:
        return cls(
            id=alert.id,
            endpoint_class=alert.endpoint_class,
            sli=alert.sli,
            severity=alert.severity,
            factor=alert.factor,
            burn_long=alert.burn_long,
            burn_short=alert.burn_short,
            long_window_s=alert.long_window_s,
            short_window_s=alert.short_window_s,
            raised_at=alert.raised_at,
            cleared_at=alert.cleared_at,
        )


@dataclass(frozen=True)
class TenantSloStatus:
    tenant_id: int
    now: datetime
    classes: dict[str, ClassStatus]
    open_alerts: list[AlertView]

    def as_dict(self) -> dict[str, Any]:
        def clean(value: Any) -> Any:
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, float):
                return round(value, 6) if math.isfinite(value) else None
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        out: dict[str, Any] = clean(asdict(self))
        return out


def window_status(
    label: str, seconds: int, counts: WindowCounts | None, objective: Objective, needed: int = 1
) -> WindowStatus:
    """Percentiles and shares are measurements and always shown; burn rates are judgements and
    only given from ``needed`` requests on."""
    counts = counts or WindowCounts()
    judged = counts.sample >= needed
    return WindowStatus(
        window=label,
        seconds=seconds,
        requests=counts.requests,
        served=counts.served,
        errors=counts.errors,
        throttled=counts.throttled,
        p50_ms=counts.percentile(0.50),
        p95_ms=counts.percentile(0.95),
        p99_ms=counts.percentile(0.99),
        share_good=counts.share_good(objective.latency_threshold_ms),
        availability=counts.availability(),
        latency_burn_rate=(
            counts.latency_burn_rate(objective.latency_threshold_ms, objective.latency_target)
            if judged
            else None
        ),
        availability_burn_rate=counts.availability_burn_rate(objective.availability_target)
        if judged
        else None,
        judged=judged,
    )


def class_status(
    cls: str, objective: Objective, windows: dict[str, WindowStatus], needed: int
) -> ClassStatus:
    """The verdict over the objective window (the last of ``windows``): not judged below ``needed``
    requests; else the budget left, bounded for display, and whether the objective is met."""
    whole = list(windows.values())[-1]
    sample = whole.requests - whole.throttled
    if not whole.judged:
        return ClassStatus(
            endpoint_class=cls,
            objective=objective,
            windows=windows,
            latency_budget_remaining=None,
            availability_budget_remaining=None,
            meets_objective=None,
            judged=False,
            sample=sample,
            min_sample=needed,
            verdict=NOT_ENOUGH_TRAFFIC,
            summary=not_enough_traffic(sample, needed),
        )
    latency_left = budget_remaining(whole.latency_burn_rate)
    availability_left = budget_remaining(whole.availability_burn_rate)
    meets = latency_left >= 0.0 and availability_left >= 0.0
    return ClassStatus(
        endpoint_class=cls,
        objective=objective,
        windows=windows,
        latency_budget_remaining=clamp_budget(latency_left),
        availability_budget_remaining=clamp_budget(availability_left),
        meets_objective=meets,
        judged=True,
        sample=sample,
        min_sample=needed,
        verdict=MEETS if meets else BUDGET_EXHAUSTED,
        summary="meets the objective" if meets else "error budget exhausted",
        latency_budget_remaining_raw=latency_left,
        availability_budget_remaining_raw=availability_left,
    )


def slo_status_for_tenant(*, tenant_id: int, now: datetime | None = None) -> TenantSloStatus:
    """Rolling 1 h / 24 h / 28 d p50, p95, p99, share good, availability and burn rate per endpoint
    class, the 28-day error budget left (1.0 untouched, 0 spent, -1.0 spent twice over or worse),
    and open alerts. A window with fewer than ``SLO_MIN_SAMPLE`` requests has no burn rate, and a
    class with fewer over 28 days no budget: its ``summary`` says "not enough traffic yet"."""
    now = now or timezone.now()
    needed = min_sample()
    objectives = slo_objectives_for_tenant(tenant_id=tenant_id)
    per_window = window_counts(tenant_id=tenant_id, now=now, windows_s=[s for _, s in STATUS_WINDOWS])
    classes: dict[str, ClassStatus] = {}
    for cls in CLASSES:
        objective = objectives[cls]
        windows = {
            label: window_status(label, seconds, per_window[i].get(cls), objective, needed)
            for i, (label, seconds) in enumerate(STATUS_WINDOWS)
        }
        classes[cls] = class_status(cls, objective, windows, needed)
    alerts = [AlertView.of(a) for a in slo_alerts_for_tenant(tenant_id=tenant_id, open_only=True)]
    return TenantSloStatus(tenant_id=tenant_id, now=now, classes=classes, open_alerts=alerts)


# --- dashboard time series ---------------------------------------------------------------------


@dataclass(frozen=True)
class SeriesPoint:
    start: datetime
    requests: int
    served: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    share_good: float | None
    availability: float | None


@dataclass(frozen=True)
class Series:
    endpoint_class: str
    objective: Objective
    step_s: int
    points: list[SeriesPoint]


MAX_POINTS = 2000


def slo_timeseries(
    *, tenant_id: int, endpoint_class: str, start: datetime, end: datetime, step_s: int
) -> Series:
    """p50/p95/p99, share good and availability per ``step_s`` slot in ``[start, end)``, with the
    objective to draw them against. Slots with no traffic are present with ``requests == 0``.

    Data older than ``SLO_MINUTE_RETENTION_H`` exists only per hour: use ``step_s >= 3600`` there,
    or one slot will hold a whole hour.
    """
    if endpoint_class not in CLASSES:
        raise DomainError(f"endpoint_class must be one of {list(CLASSES)}")
    if step_s < 60 or end <= start or (end - start).total_seconds() / step_s > MAX_POINTS:
        raise DomainError(f"step_s must be >= 60 and give at most {MAX_POINTS} points over a non-empty range")
    objective = slo_objectives_for_tenant(tenant_id=tenant_id)[endpoint_class]
    n_slots = math.ceil((end - start).total_seconds() / step_s)
    slots = [WindowCounts() for _ in range(n_slots)]
    sql = """
        SELECT floor((extract(epoch FROM h.start) - %(t0)s) / %(step)s)::bigint, h.status_class, u.i - 1, SUM(u.c)
        FROM slo_latencyhistogram h CROSS JOIN LATERAL unnest(h.counts) WITH ORDINALITY AS u(c, i)
        WHERE h.tenant_id = %(tenant)s AND h.endpoint_class = %(cls)s
          AND h.start >= %(start)s AND h.start < %(end)s AND u.c <> 0
        GROUP BY 1, 2, 3
    """
    params: dict[str, Any] = {
        "t0": start.timestamp(),
        "step": step_s,
        "tenant": tenant_id,
        "cls": endpoint_class,
        "start": start,
        "end": end,
    }
    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute(sql, params)
        for slot, status_class, bucket, count in cursor.fetchall():
            if 0 <= int(slot) < n_slots:
                slots[int(slot)].add(status_class, int(bucket), int(count))
    points = [
        SeriesPoint(
            start=start + timedelta(seconds=i * step_s),
            requests=c.requests,
            served=c.served,
            p50_ms=c.percentile(0.50),
            p95_ms=c.percentile(0.95),
            p99_ms=c.percentile(0.99),
            share_good=c.share_good(objective.latency_threshold_ms),
            availability=c.availability(),
        )
        for i, c in enumerate(slots)
    ]
    return Series(endpoint_class=endpoint_class, objective=objective, step_s=step_s, points=points)


# --- alerts ------------------------------------------------------------------------------------


def slo_alerts_for_tenant(*, tenant_id: int, open_only: bool = False, limit: int = 100) -> list[SloAlert]:
    """The tenant's burn-rate alerts, newest first (open ones only with ``open_only``)."""
    with tenant_context(tenant_id):
        query = SloAlert.objects.filter(tenant_id=tenant_id)
        if open_only:
            query = query.filter(cleared_at__isnull=True)
        return list(query.order_by("-raised_at", "-id")[:limit])

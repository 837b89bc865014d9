"""SLO state changes: objectives (audited), histogram flushes, hourly roll-up, burn-rate alerts (audited)."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.conf import sotto
from apps.core.errors import DomainError
from apps.core.tenant_db import activate_tenant, dangerously_as_platform, tenant_context
from apps.slo.endpoints import CLASSES
from apps.slo.models import SloAlert, SloObjective
from apps.slo.recorder import Batch, Cell, Key
from apps.slo.selectors import Objective, min_sample, slo_objectives_for_tenant, window_counts

logger = logging.getLogger(__name__)

# --- objectives --------------------------------------------------------------------------------

MAX_THRESHOLD_MS = 600_000.0
MIN_TARGET, MAX_TARGET = 0.5, 0.9999  # a target of 1.0 leaves no error budget to burn


def _validate(
    endpoint_class: str, latency_threshold_ms: float, latency_target: float, availability_target: float
) -> None:
    problems: dict[str, str] = {}
    if endpoint_class not in CLASSES:
        problems["endpoint_class"] = f"must be one of {list(CLASSES)}"
    if not 0.0 < latency_threshold_ms <= MAX_THRESHOLD_MS:
        problems["latency_threshold_ms"] = f"must be in (0, {MAX_THRESHOLD_MS:g}]"
    for name, value in (("latency_target", latency_target), ("availability_target", availability_target)):
        if not MIN_TARGET <= value <= MAX_TARGET:
            problems[name] = f"must be in [{MIN_TARGET}, {MAX_TARGET}] (e.g. 0.99 for 99%)"
    if problems:
        raise DomainError(
            "invalid objective: " + "; ".join(f"{k} {v}" for k, v in problems.items()), details=problems
        )


def slo_objective_set(
    *,
    tenant_id: int,
    endpoint_class: str,
    latency_threshold_ms: float,
    latency_target: float,
    availability_target: float,
    actor: str,
) -> Objective:
    """Set one endpoint class's objective for a tenant; audited (``slo.objective.set``) in the same
    transaction. The caller checks that ``actor`` may (the tenant's owner or admin)."""
    _validate(endpoint_class, latency_threshold_ms, latency_target, availability_target)
    with tenant_context(tenant_id):
        before = slo_objectives_for_tenant(tenant_id=tenant_id)[endpoint_class]
        SloObjective.objects.update_or_create(
            tenant_id=tenant_id,
            endpoint_class=endpoint_class,
            defaults={
                "latency_threshold_ms": float(latency_threshold_ms),
                "latency_target": float(latency_target),
                "availability_target": float(availability_target),
                "updated_by": actor[:150],
            },
        )
        after = slo_objectives_for_tenant(tenant_id=tenant_id)[endpoint_class]
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.SLO_OBJECTIVE_SET,
            target_type="slo_objective",
            target_id=endpoint_class,
            details={"before": _objective_fields(before), "after": _objective_fields(after)},
        )
    return after


def slo_objective_reset(*, tenant_id: int, endpoint_class: str, actor: str) -> Objective:
    """Return an endpoint class to the default objective; audited (``slo.objective.reset``)."""
    if endpoint_class not in CLASSES:
        raise DomainError(f"endpoint_class must be one of {list(CLASSES)}")
    with tenant_context(tenant_id):
        before = slo_objectives_for_tenant(tenant_id=tenant_id)[endpoint_class]
        deleted, _ = SloObjective.objects.filter(tenant_id=tenant_id, endpoint_class=endpoint_class).delete()
        after = slo_objectives_for_tenant(tenant_id=tenant_id)[endpoint_class]
        if deleted:
            audit.record(
                tenant_id=tenant_id,
                actor=actor,
                action=AuditAction.SLO_OBJECTIVE_RESET,
                target_type="slo_objective",
                target_id=endpoint_class,
                details={"before": _objective_fields(before), "after": _objective_fields(after)},
            )
    return after


def _number(value: float) -> str:
    """Audit details carry numbers as text (the chain hashes canonical JSON, where floats are not stable)."""
    return f"{value:.6g}"


def _objective_fields(objective: Objective) -> dict[str, Any]:
    return {
        "latency_threshold_ms": _number(objective.latency_threshold_ms),
        "latency_target": _number(objective.latency_target),
        "availability_target": _number(objective.availability_target),
    }


# --- flushing the in-process buffers -----------------------------------------------------------

_UPSERT_MINUTE = """
    INSERT INTO slo_latencyhistogram (tenant_id, endpoint_class, status_class, width_s, start, counts, total, sum_ms)
    VALUES (%s, %s, %s, 60, %s, %s::bigint[], %s, %s)
    ON CONFLICT (tenant_id, endpoint_class, status_class, width_s, start) DO UPDATE SET
        counts = slo_add_counts(slo_latencyhistogram.counts, EXCLUDED.counts),
        total = slo_latencyhistogram.total + EXCLUDED.total,
        sum_ms = slo_latencyhistogram.sum_ms + EXCLUDED.sum_ms
"""
_UPSERT_TOTAL = """
    INSERT INTO slo_latencytotal (tenant_id, endpoint_class, status_class, counts, total, sum_ms)
    VALUES (%s, %s, %s, %s::bigint[], %s, %s)
    ON CONFLICT (tenant_id, endpoint_class, status_class) DO UPDATE SET
        counts = slo_add_counts(slo_latencytotal.counts, EXCLUDED.counts),
        total = slo_latencytotal.total + EXCLUDED.total,
        sum_ms = slo_latencytotal.sum_ms + EXCLUDED.sum_ms
"""
_UPSERT_TASK = """
    INSERT INTO slo_tasktotal (queue, state, counts, total, sum_ms)
    VALUES (%s, %s, %s::bigint[], %s, %s)
    ON CONFLICT (queue, state) DO UPDATE SET
        counts = slo_add_counts(slo_tasktotal.counts, EXCLUDED.counts),
        total = slo_tasktotal.total + EXCLUDED.total,
        sum_ms = slo_tasktotal.sum_ms + EXCLUDED.sum_ms
"""


def slo_histograms_write(*, batch: Batch) -> None:
    """Add a flushed batch to the minute rows, the lifetime totals and the task totals.

    One transaction, tenant by tenant (each under its own RLS tenant and savepoint): a tenant
    deleted since its requests were recorded loses only its own rows.
    """
    by_tenant: dict[int, list[tuple[Key, Cell]]] = defaultdict(list)
    for key, cell in batch.requests.items():
        by_tenant[key[0]].append((key, cell))
    with transaction.atomic(), connection.cursor() as cursor:
        for tenant_id, items in sorted(by_tenant.items()):
            minute_rows = []
            totals: dict[tuple[str, str], Cell] = defaultdict(Cell)
            for (_, minute, cls, status_class), cell in sorted(items):
                minute_rows.append(
                    (
                        tenant_id,
                        cls,
                        status_class,
                        datetime.fromtimestamp(minute, tz=UTC),
                        cell.counts,
                        cell.total,
                        cell.sum_ms,
                    )
                )
                totals[(cls, status_class)].merge(cell)
            total_rows = [
                (tenant_id, cls, status_class, cell.counts, cell.total, cell.sum_ms)
                for (cls, status_class), cell in sorted(totals.items())
            ]
            try:
                with transaction.atomic():
                    activate_tenant(tenant_id)
                    cursor.executemany(_UPSERT_MINUTE, minute_rows)
                    cursor.executemany(_UPSERT_TOTAL, total_rows)
            except DatabaseError as exc:
                logger.warning(
                    "slo: dropped %d rows of tenant %s: %s", len(minute_rows), tenant_id, type(exc).__name__
                )
        task_rows = [
            (queue, state, cell.counts, cell.total, cell.sum_ms)
            for (queue, state), cell in sorted(batch.tasks.items())
        ]
        if task_rows:
            cursor.executemany(_UPSERT_TASK, task_rows)


# --- roll-up and retention ---------------------------------------------------------------------

_ROLL_UP = """
    WITH moved AS (
        DELETE FROM slo_latencyhistogram WHERE width_s = 60 AND start < %(cutoff)s
        RETURNING tenant_id, endpoint_class, status_class, date_trunc('hour', start) AS hour, counts, total, sum_ms
    ), cells AS (
        SELECT tenant_id, endpoint_class, status_class, hour, SUM(total)::bigint AS total, SUM(sum_ms) AS sum_ms
        FROM moved GROUP BY 1, 2, 3, 4
    ), per_bucket AS (
        SELECT m.tenant_id, m.endpoint_class, m.status_class, m.hour, u.i, SUM(u.c)::bigint AS c
        FROM moved m CROSS JOIN LATERAL unnest(m.counts) WITH ORDINALITY AS u(c, i)
        GROUP BY 1, 2, 3, 4, 5
    ), folded AS (
        SELECT tenant_id, endpoint_class, status_class, hour, array_agg(c ORDER BY i) AS counts
        FROM per_bucket GROUP BY 1, 2, 3, 4
    )
    INSERT INTO slo_latencyhistogram (tenant_id, endpoint_class, status_class, width_s, start, counts, total, sum_ms)
    SELECT f.tenant_id, f.endpoint_class, f.status_class, 3600, f.hour, f.counts, c.total, c.sum_ms
    FROM folded f JOIN cells c USING (tenant_id, endpoint_class, status_class, hour)
    ON CONFLICT (tenant_id, endpoint_class, status_class, width_s, start) DO UPDATE SET
        counts = slo_add_counts(slo_latencyhistogram.counts, EXCLUDED.counts),
        total = slo_latencyhistogram.total + EXCLUDED.total,
        sum_ms = slo_latencyhistogram.sum_ms + EXCLUDED.sum_ms
"""


MIN_MINUTE_RETENTION_H = 7.0


@dataclass(frozen=True)
class Compaction:
    rolled_up_rows: int
    deleted_rows: int


def slo_histograms_compact(*, now: datetime | None = None) -> Compaction:
    """Fold minute rows older than ``SLO_MINUTE_RETENTION_H`` (whole hours) into hour rows and delete
    rows older than ``SLO_RETENTION_DAYS``. Idempotent; a late minute row is folded in next time.

    Runs for all tenants in two statements (platform maintenance: a per-tenant loop would issue
    two statements per tenant per minute for the same result).
    """
    now = now or timezone.now()
    # Burn-rate alerts read up to 6 h of minute rows; never fold those away whatever the setting.
    keep_h = max(MIN_MINUTE_RETENTION_H, sotto().slo_minute_retention_h)
    cutoff = (now - timedelta(hours=keep_h)).replace(minute=0, second=0, microsecond=0)
    oldest = now - timedelta(days=sotto().slo_retention_days)
    with dangerously_as_platform(), connection.cursor() as cursor:
        cursor.execute(_ROLL_UP, {"cutoff": cutoff})
        rolled = cursor.rowcount
        cursor.execute("DELETE FROM slo_latencyhistogram WHERE start < %s", [oldest])
        deleted = cursor.rowcount
    return Compaction(rolled_up_rows=max(rolled, 0), deleted_rows=max(deleted, 0))


# --- multi-window burn-rate alerts -------------------------------------------------------------


@dataclass(frozen=True)
class BurnRule:
    """Fire when the burn rate is at least ``factor`` over both windows (Google SRE workbook, ch. 5)."""

    severity: str
    factor: float
    long_s: int
    short_s: int


BURN_RULES: tuple[BurnRule, ...] = (
    BurnRule(SloAlert.Severity.FAST, 14.4, 3600, 300),  # 2% of a 28-day budget in 1 h
    BurnRule(SloAlert.Severity.SLOW, 6.0, 6 * 3600, 1800),  # 5% of a 28-day budget in 6 h
)
ALERT_ACTOR = SystemActor.SLO_ALERTS


@dataclass(frozen=True)
class Evaluation:
    tenants: int
    raised: int
    cleared: int


def slo_alerts_evaluate(*, now: datetime | None = None, tenant_ids: list[int] | None = None) -> Evaluation:
    """Raise and clear burn-rate alerts for every tenant (or ``tenant_ids``); each raise and clear
    is audited (``slo.alert.raise`` / ``slo.alert.clear``) in the transaction that writes it."""
    now = now or timezone.now()
    if tenant_ids is None:
        from apps.tenancy.models import Tenant

        tenant_ids = list(Tenant.objects.order_by("id").values_list("id", flat=True))
    raised = cleared = 0
    for tenant_id in tenant_ids:
        r, c = _evaluate_tenant(tenant_id, now)
        raised, cleared = raised + r, cleared + c
    return Evaluation(tenants=len(tenant_ids), raised=raised, cleared=cleared)


def _evaluate_tenant(tenant_id: int, now: datetime) -> tuple[int, int]:
    """A rule fires only when its long window holds ``SLO_MIN_SAMPLE`` requests (the status gives no
    burn rate for fewer, and an alert says nothing the status would not) and at least
    ``SLO_ALERT_MIN_EVENTS``; the short window only confirms that the burn goes on."""
    windows = sorted({w for rule in BURN_RULES for w in (rule.long_s, rule.short_s)})
    min_events = max(sotto().slo_alert_min_events, min_sample())
    raised = cleared = 0
    with tenant_context(tenant_id):
        per_window = dict(
            zip(windows, window_counts(tenant_id=tenant_id, now=now, windows_s=windows), strict=True)
        )
        open_alerts = {
            (a.endpoint_class, a.sli, a.severity): a
            for a in SloAlert.objects.select_for_update().filter(tenant_id=tenant_id, cleared_at__isnull=True)
        }
        if not open_alerts and not any(per_window.values()):
            return 0, 0
        objectives = slo_objectives_for_tenant(tenant_id=tenant_id)
        for cls in CLASSES:
            objective = objectives[cls]
            for rule in BURN_RULES:
                long_counts, short_counts = (
                    per_window[rule.long_s].get(cls),
                    per_window[rule.short_s].get(cls),
                )
                for sli in (SloAlert.Sli.LATENCY, SloAlert.Sli.AVAILABILITY):
                    burn_long = _burn(long_counts, sli, objective, min_events)
                    burn_short = _burn(short_counts, sli, objective, 1)
                    firing = burn_long >= rule.factor and burn_short >= rule.factor
                    alert = open_alerts.get((cls, sli, rule.severity))
                    if firing and alert is None:
                        _raise(tenant_id, cls, sli, rule, burn_long, burn_short, now)
                        raised += 1
                    elif alert is not None and firing:
                        alert.last_burn_long, alert.last_burn_short, alert.last_evaluated_at = (
                            burn_long,
                            burn_short,
                            now,
                        )
                        alert.save(update_fields=["last_burn_long", "last_burn_short", "last_evaluated_at"])
                    elif alert is not None:
                        _clear(alert, burn_long, burn_short, now)
                        cleared += 1
    return raised, cleared


def _burn(counts: Any, sli: str, objective: Objective, min_events: int) -> float:
    if counts is None:
        return 0.0
    if sli == SloAlert.Sli.LATENCY:
        if counts.served < min_events:
            return 0.0
        rate = counts.latency_burn_rate(objective.latency_threshold_ms, objective.latency_target)
    else:
        if counts.requests - counts.throttled < min_events:
            return 0.0
        rate = counts.availability_burn_rate(objective.availability_target)
    return float(rate or 0.0)


def _raise(
    tenant_id: int, cls: str, sli: str, rule: BurnRule, burn_long: float, burn_short: float, now: datetime
) -> None:
    alert = SloAlert.objects.create(
        tenant_id=tenant_id,
        endpoint_class=cls,
        sli=sli,
        severity=rule.severity,
        factor=rule.factor,
        long_window_s=rule.long_s,
        short_window_s=rule.short_s,
        burn_long=burn_long,
        burn_short=burn_short,
        raised_at=now,
        last_burn_long=burn_long,
        last_burn_short=burn_short,
        last_evaluated_at=now,
    )
    audit.record(
        tenant_id=tenant_id,
        actor=ALERT_ACTOR,
        action=AuditAction.SLO_ALERT_RAISE,
        target_type="slo_alert",
        target_id=str(alert.id),
        details={
            "endpoint_class": cls,
            "sli": sli,
            "severity": rule.severity,
            "factor": _number(rule.factor),
            "burn_long": _number(burn_long),
            "burn_short": _number(burn_short),
        },
    )


def _clear(alert: SloAlert, burn_long: float, burn_short: float, now: datetime) -> None:
    alert.cleared_at = now
    alert.last_burn_long, alert.last_burn_short, alert.last_evaluated_at = burn_long, burn_short, now
    alert.save(update_fields=["cleared_at", "last_burn_long", "last_burn_short", "last_evaluated_at"])
    audit.record(
        tenant_id=alert.tenant_id,
        actor=ALERT_ACTOR,
        action=AuditAction.SLO_ALERT_CLEAR,
        target_type="slo_alert",
        target_id=str(alert.id),
        details={
            "endpoint_class": alert.endpoint_class,
            "sli": alert.sli,
            "severity": alert.severity,
            "burn_long": _number(burn_long),
            "burn_short": _number(burn_short),
        },
    )

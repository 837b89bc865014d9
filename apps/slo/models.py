"""SLO storage: per-minute latency histograms (rolled up to hours), lifetime totals for Prometheus,
Celery task totals, objectives and burn-rate alerts.

Histogram rows are only ever written by the background flusher (``recorder.py``) and the beat
task; the request path never touches these tables.
"""

from __future__ import annotations

from typing import Any

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q

from apps.tenancy.models import TenantOwned


class LatencyHistogram(TenantOwned):
    """Bucket counts (``buckets.BOUNDS_MS``) for one tenant, endpoint class and status class over
    ``[start, start + width_s)``: one-minute rows, folded into one-hour rows once they are older
    than ``SLO_MINUTE_RETENTION_H``."""

    endpoint_class = models.CharField(max_length=16)
    status_class = models.CharField(max_length=8)
    width_s = models.IntegerField()
    start = models.DateTimeField()
    counts: Any = ArrayField(models.BigIntegerField())
    total = models.BigIntegerField()
    sum_ms = models.FloatField()

    class Meta:
        db_table = "slo_latencyhistogram"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "endpoint_class", "status_class", "width_s", "start"],
                name="slo_hist_unique",
            )
        ]
        indexes = [
            models.Index(fields=["tenant", "start"], name="slo_hist_tenant_start"),
            models.Index(fields=["width_s", "start"], name="slo_hist_width_start"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.endpoint_class}:{self.status_class}@{self.start:%Y-%m-%dT%H:%M}"


class LatencyTotal(TenantOwned):
    """Lifetime bucket counts per tenant, endpoint class and status class: monotonic, never pruned,
    so ``/metrics`` can expose them as Prometheus counters from any process."""

    endpoint_class = models.CharField(max_length=16)
    status_class = models.CharField(max_length=8)
    counts: Any = ArrayField(models.BigIntegerField())
    total = models.BigIntegerField()
    sum_ms = models.FloatField()

    class Meta:
        db_table = "slo_latencytotal"
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "endpoint_class", "status_class"], name="slo_total_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.endpoint_class}:{self.status_class}"


class TaskTotal(models.Model):
    """Lifetime Celery task duration buckets per queue and final state (platform-level, no tenant)."""

    queue = models.CharField(max_length=64)
    state = models.CharField(max_length=16)
    counts: Any = ArrayField(models.BigIntegerField())
    total = models.BigIntegerField()
    sum_ms = models.FloatField()

    class Meta:
        db_table = "slo_tasktotal"
        constraints = [models.UniqueConstraint(fields=["queue", "state"], name="slo_task_unique")]

    def __str__(self) -> str:
        return f"{self.queue}:{self.state}"


class SloObjective(TenantOwned):
    """A tenant's own objective for one endpoint class; absent rows mean the SOTTO defaults."""

    endpoint_class = models.CharField(max_length=16)
    latency_threshold_ms = models.FloatField()
    latency_target = models.FloatField()
    availability_target = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True)

    class Meta:
        db_table = "slo_objective"
        constraints = [
            models.UniqueConstraint(fields=["tenant", "endpoint_class"], name="slo_objective_unique")
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.endpoint_class}"


class SloAlert(TenantOwned):
    """A multi-window burn-rate alert: open while ``cleared_at`` is null (at most one open per key)."""

    class Severity(models.TextChoices):
        FAST = "fast"
        SLOW = "slow"

    class Sli(models.TextChoices):
        LATENCY = "latency"
        AVAILABILITY = "availability"

    endpoint_class = models.CharField(max_length=16)
    sli = models.CharField(max_length=16, choices=Sli.choices)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    factor = models.FloatField()
    long_window_s = models.IntegerField()
    short_window_s = models.IntegerField()
    burn_long = models.FloatField()
    burn_short = models.FloatField()
    raised_at = models.DateTimeField()
    cleared_at = models.DateTimeField(null=True, blank=True)
    last_burn_long = models.FloatField()
    last_burn_short = models.FloatField()
    last_evaluated_at = models.DateTimeField()

    class Meta:
        db_table = "slo_alert"
        ordering = ["-raised_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["tenant", "endpoint_class", "sli", "severity"],
                condition=Q(cleared_at__isnull=True),
                name="slo_alert_one_open",
            )
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.endpoint_class}:{self.sli}:{self.severity}"

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None

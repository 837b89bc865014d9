"""Prometheus exposition at ``/metrics`` through ``prometheus_client``, read from the database.

Every web process flushes its own histograms to PostgreSQL, so a custom collector that reads the
lifetime totals (``slo_latencytotal``, ``slo_tasktotal``) gives the same, monotonic answer from
whichever process serves the scrape: multiprocess-safe without ``PROMETHEUS_MULTIPROC_DIR``, at
the price of lagging by up to one flush interval (``SLO_FLUSH_EVERY_S``).

Who may scrape: with ``SOTTO_METRICS_TOKEN`` set, only a client presenting
``Authorization: Bearer <token>``; without it, only loopback clients (REMOTE_ADDR 127.0.0.0/8 or
::1). Behind a reverse proxy every client looks like the proxy, so set the token there.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Iterator

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from apps.api.errors import error_body
from apps.core.conf import sotto
from apps.core.errors import ErrorCode
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.modeling import selectors as modeling_selectors
from apps.slo import buckets

logger = logging.getLogger(__name__)


def _histogram_buckets(counts: list[int], total: int) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    cumulative = 0
    i = 0
    for bound in buckets.EXPORT_BOUNDS_MS:
        while i < len(buckets.BOUNDS_MS) and buckets.BOUNDS_MS[i] <= bound:
            cumulative += int(counts[i]) if i < len(counts) else 0
            i += 1
        out.append((repr(bound / 1000.0), float(cumulative)))
    out.append(("+Inf", float(total)))
    return out


class SottoCollector:
    """Request and task histograms, open SLO alerts, and model facts from ``apps.modeling`` if present."""

    def collect(self) -> Iterator[Metric]:
        with dangerously_as_platform():  # operators' cross-tenant view; tenants never reach it
            yield from self._requests()
            yield from self._tasks()
            yield from self._alerts()
        yield from self._modeling()

    def describe(self) -> list[Metric]:
        return []  # no database access at registration time

    @staticmethod
    def _requests() -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "sotto_http_request_duration_seconds",
            "Server-side request duration (first middleware to response) by tenant, endpoint class and status class.",
            labels=["tenant", "endpoint_class", "status_class"],
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT t.slug, l.endpoint_class, l.status_class, l.counts, l.total, l.sum_ms
                   FROM slo_latencytotal l JOIN tenancy_tenant t ON t.id = l.tenant_id
                   ORDER BY 1, 2, 3"""
            )
            for slug, cls, status_class, counts, total, sum_ms in cursor.fetchall():
                family.add_metric(
                    [slug, cls, status_class],
                    buckets=_histogram_buckets(counts, int(total)),
                    sum_value=sum_ms / 1000.0,
                )
        yield family

    @staticmethod
    def _tasks() -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "sotto_celery_task_duration_seconds",
            "Celery task run time (prerun to postrun) by queue and final state; _count is the task count.",
            labels=["queue", "state"],
        )
        with connection.cursor() as cursor:
            cursor.execute("SELECT queue, state, counts, total, sum_ms FROM slo_tasktotal ORDER BY 1, 2")
            for queue, state, counts, total, sum_ms in cursor.fetchall():
                family.add_metric(
                    [queue, state], buckets=_histogram_buckets(counts, int(total)), sum_value=sum_ms / 1000.0
                )
        yield family

    @staticmethod
    def _alerts() -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "sotto_slo_alert_firing",
            "1 while a multi-window burn-rate alert is open.",
            labels=["tenant", "endpoint_class", "sli", "severity"],
        )
        with connection.cursor() as cursor:
            cursor.execute(
                """SELECT t.slug, a.endpoint_class, a.sli, a.severity FROM slo_alert a
                   JOIN tenancy_tenant t ON t.id = a.tenant_id WHERE a.cleared_at IS NULL ORDER BY 1, 2, 3, 4"""
            )
            for row in cursor.fetchall():
                family.add_metric(list(row), 1.0)
        yield family

    @staticmethod
    def _modeling() -> Iterator[Metric]:
        """Active model version and privacy budget left per tenant, from ``apps.modeling.selectors``."""
        from apps.tenancy.models import Tenant

        versions = GaugeMetricFamily(
            "sotto_model_active_version_info",
            "The model version serving each tenant (value is always 1).",
            labels=["tenant", "version"],
        )
        budgets = GaugeMetricFamily(
            "sotto_privacy_budget_epsilon_remaining",
            "Privacy budget (epsilon) each tenant has left.",
            labels=["tenant"],
        )
        for tenant_id, slug in Tenant.objects.order_by("slug").values_list("id", "slug"):
            try:
                with tenant_context(tenant_id):
                    version = modeling_selectors.active_version(tenant_id)
                    remaining = float(
                        modeling_selectors.privacy_budget(tenant_id=tenant_id)["epsilon_remaining"]
                    )
            except Exception:  # a modeling bug must not take the whole scrape down
                logger.exception("metrics: modeling selectors failed for tenant %s", slug)
                continue
            if version is not None:
                versions.add_metric([slug, str(version)], 1.0)
            budgets.add_metric([slug], remaining)
        yield versions
        yield budgets


registry = CollectorRegistry(auto_describe=False)
registry.register(SottoCollector())  # type: ignore[arg-type]


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def metrics_response(request: HttpRequest) -> HttpResponse:
    token = sotto().metrics_token
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), str(token).encode()):
            response = JsonResponse(
                error_body(ErrorCode.UNAUTHENTICATED, "metrics need 'Authorization: Bearer <metrics token>'"),
                status=401,
            )
            response["WWW-Authenticate"] = 'Bearer realm="sotto-metrics"'
            return response
    elif not _is_loopback(request.META.get("REMOTE_ADDR", "")):
        return JsonResponse(
            error_body(
                ErrorCode.FORBIDDEN,
                "metrics are served to loopback clients only unless SOTTO_METRICS_TOKEN is set",
            ),
            status=403,
        )
    if request.method not in {"GET", "HEAD"}:
        return JsonResponse(error_body(ErrorCode.METHOD_NOT_ALLOWED, "use GET"), status=405)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

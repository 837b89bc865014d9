"""Per-request latency measurement and the access log line; ``/metrics`` for the scraper.

``SloMiddleware`` sits right after ``RequestIdMiddleware`` so it times everything else (the other
middleware, DRF, the view, the transaction commit). It only adds one observation to the
in-process buffer (``recorder.py``); the database sees it later, from the flusher thread.

The tenant is what ``TenantAPIView`` put on the request after authenticating the API key
(``request.sotto_tenant_id``): requests without a valid key are logged but not measured against
any tenant's objective.

The two batch endpoints are classed by their size (``ingest`` up to ``SLO_INGEST_SMALL_MAX``
records, ``ingest_batch`` above): the size is what the view noted on the request
(``request.sotto_batch_size``, set by ``TenantAPIView.note_batch_size`` before validation, so a 413
counts too). The middleware never parses a body itself: that would cost milliseconds per batch on
the request thread, outside the measured time; a body nobody parsed counts as ``ingest``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core.conf import sotto
from apps.core.context import tenant_var
from apps.slo.endpoints import batch_key, endpoint_class
from apps.slo.recorder import Recorder, default_recorder

access_logger = logging.getLogger("sotto.access")

# Injected in tests for deterministic durations without sleeping.
timer: Callable[[], float] = time.perf_counter

UNMATCHED = "<unmatched>"


def route_of(request: HttpRequest) -> str:
    """The URL pattern that served the request, never the raw path (which may carry user ids)."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return "/" + str(match.route).lstrip("^")
    route = getattr(request, "sotto_route", None)
    return route if isinstance(route, str) else UNMATCHED


def batch_size_of(request: HttpRequest) -> int | None:
    """How many records the batch write carried, as its view noted it; None when nobody parsed its body."""
    noted = getattr(request, "sotto_batch_size", None)
    return noted if isinstance(noted, int) and not isinstance(noted, bool) else None


class SloMiddleware:
    def __init__(
        self, get_response: Callable[[HttpRequest], HttpResponse], recorder: Recorder | None = None
    ) -> None:
        self.get_response = get_response
        self.recorder = recorder or default_recorder()
        self.access_log = sotto().access_log

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = timer()
        response = self.get_response(request)
        duration_ms = (timer() - started) * 1000.0
        method = request.method or "GET"
        path = request.path_info
        key = batch_key(method, path)
        if key is None:
            cls = endpoint_class(method, path)
        else:
            cls = endpoint_class(
                method,
                path,
                batch_size=batch_size_of(request),
                small_max=sotto().slo_ingest_small_max,
            )
        status = response.status_code
        tenant_id = getattr(request, "sotto_tenant_id", None)
        if tenant_id is not None:
            self.recorder.record(
                tenant_id=tenant_id, endpoint_class=cls, status=status, duration_ms=duration_ms
            )
        if self.access_log and access_logger.isEnabledFor(logging.INFO):
            self._log(request, method, cls, status, duration_ms)
        return response

    @staticmethod
    def _log(request: HttpRequest, method: str, cls: str, status: int, duration_ms: float) -> None:
        route = route_of(request)
        slug = getattr(request, "sotto_tenant_slug", None)
        token = tenant_var.set(slug) if slug else None
        try:
            access_logger.info(
                "%s %s %d %.2fms class=%s",
                method,
                route,
                status,
                duration_ms,
                cls,
                extra={
                    "http": {
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(duration_ms, 3),
                        "endpoint_class": cls,
                    }
                },
            )
        finally:
            if token is not None:
                tenant_var.reset(token)


class MetricsEndpointMiddleware:
    """Answers ``/metrics`` before sessions, CSRF and the URLconf (see ``metrics.py`` for who may)."""

    PATH = "/metrics"

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info != self.PATH:
            return self.get_response(request)
        from apps.slo.metrics import metrics_response

        request.sotto_route = self.PATH  # type: ignore[attr-defined]
        return metrics_response(request)

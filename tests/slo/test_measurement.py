"""The middleware measures every authenticated request per tenant, endpoint class and status, writes
nothing on the request path, and logs one access line with the route pattern, never the raw path."""

from __future__ import annotations

import json
import logging

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.tenant_db import tenant_context
from apps.slo import buckets
from apps.slo.models import LatencyHistogram, LatencyTotal

pytestmark = pytest.mark.usefixtures("probe_urls")


def rows(tenant_id: int) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    with tenant_context(tenant_id):
        for row in LatencyHistogram.objects.filter(tenant_id=tenant_id, width_s=60):
            counts = out.setdefault((row.endpoint_class, row.status_class), buckets.empty())
            buckets.add_into(counts, row.counts)
    return out


def test_each_request_lands_in_its_tenant_class_and_latency_bucket(
    api, tenant_a, tenant_b, step_timer, recorder
):
    # given: controlled durations for five requests of tenant A and one of tenant B
    step_timer.queue.extend([12.0, 120.0, 7.0, 30.0, 45.0, 3.0])
    assert api.get("/api/v1/recommendations", **tenant_a.auth).status_code == 200
    assert api.get("/api/v1/search", **tenant_a.auth).status_code == 200
    assert api.post("/api/v1/events", {}, format="json", **tenant_a.auth).status_code == 200
    assert api.put("/api/v1/users/alice", {}, format="json", **tenant_a.auth).status_code == 200
    assert api.get("/api/v1/recommendations?status=503", **tenant_a.auth).status_code == 503
    assert api.get("/api/v1/recommendations", **tenant_b.auth).status_code == 200
    # when: the buffer is flushed
    recorder.flush()
    # then: every request sits in its own tenant's rows, in the bucket of its duration
    got_a = rows(tenant_a.tenant.id)
    assert set(got_a) == {("recommend", "2xx"), ("search", "2xx"), ("ingest", "2xx"), ("recommend", "5xx")}
    assert got_a[("recommend", "2xx")][buckets.bucket_index(12.0)] == 1
    assert got_a[("search", "2xx")][buckets.bucket_index(120.0)] == 1
    assert got_a[("ingest", "2xx")][buckets.bucket_index(7.0)] == 1
    assert got_a[("ingest", "2xx")][buckets.bucket_index(30.0)] == 1
    assert got_a[("recommend", "5xx")][buckets.bucket_index(45.0)] == 1
    assert sum(map(sum, got_a.values())) == 5
    got_b = rows(tenant_b.tenant.id)
    assert got_b == {("recommend", "2xx"): got_b[("recommend", "2xx")]}
    assert got_b[("recommend", "2xx")][buckets.bucket_index(3.0)] == 1
    with tenant_context(tenant_a.tenant.id):
        total = LatencyTotal.objects.get(
            tenant_id=tenant_a.tenant.id, endpoint_class="recommend", status_class="2xx"
        )
    assert total.total == 1 and total.sum_ms == pytest.approx(12.0)


def test_a_refused_scope_is_still_measured_for_its_tenant_but_a_bad_key_is_not(
    api, anon, live_db, step_timer, recorder
):
    from tests.support import make_tenant

    ingest_only = make_tenant("ingestonly", scopes=["ingest"])
    assert api.get("/api/v1/recommendations", **ingest_only.auth).status_code == 403
    assert (
        anon.get(
            "/api/v1/recommendations", HTTP_AUTHORIZATION="Bearer sotto_abcdefghij_" + "x" * 43
        ).status_code
        == 401
    )
    pending = recorder.pending()
    assert {(k[0], k[2], k[3]) for k in pending.requests} == {(ingest_only.tenant.id, "recommend", "4xx")}


def test_nothing_is_written_to_the_database_on_the_request_path(api, tenant_a, step_timer, recorder):
    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/recommendations", **tenant_a.auth).status_code == 200
    assert queries.captured_queries, "the probe request itself should have run queries"
    assert not [q["sql"] for q in queries.captured_queries if "slo_" in q["sql"]]
    assert sum(c.total for c in recorder.pending().requests.values()) == 1


def test_the_flush_adds_to_rows_written_by_other_processes(api, tenant_a, step_timer, recorder):
    step_timer.queue.extend([5.0, 5.0])
    api.get("/api/v1/recommendations", **tenant_a.auth)
    recorder.flush()
    api.get("/api/v1/recommendations", **tenant_a.auth)
    recorder.flush()
    with tenant_context(tenant_a.tenant.id):
        minute_rows = list(
            LatencyHistogram.objects.filter(tenant_id=tenant_a.tenant.id, endpoint_class="recommend")
        )
    assert sum(r.total for r in minute_rows) == 2
    assert sum(sum(r.counts) for r in minute_rows) == 2


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def access_log():
    from apps.core.logging import JsonFormatter, RequestContextFilter

    handler = _Capture()
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sotto.access")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_the_access_log_names_the_route_pattern_and_tenant_never_the_user_id(
    api, tenant_a, step_timer, recorder, access_log
):
    step_timer.queue.append(42.0)
    response = api.put("/api/v1/users/alice-secret-id", {}, format="json", **tenant_a.auth)
    assert response.status_code == 200
    (record,) = [r for r in access_log.records if r.name == "sotto.access"]
    line = json.loads(access_log.format(record))
    assert "alice-secret-id" not in json.dumps(line) and "alice-secret-id" not in json.dumps(record.http)
    assert line["msg"] == "PUT /api/v1/users/<str:user_ref> 200 42.00ms class=ingest"
    assert line["tenant"] == tenant_a.slug
    assert line["request_id"] == response["X-Request-ID"]
    assert record.http == {
        "method": "PUT",
        "route": "/api/v1/users/<str:user_ref>",
        "status": 200,
        "duration_ms": 42.0,
        "endpoint_class": "ingest",
    }


def test_an_unrouted_path_is_logged_as_unmatched(anon, live_db, access_log):
    anon.get("/no-such-place/bob-secret")
    (record,) = [r for r in access_log.records if r.name == "sotto.access"]
    assert record.getMessage().startswith("GET <unmatched> 404")
    assert "bob-secret" not in access_log.format(record)


def test_a_throttled_request_is_attributed_to_its_tenant(
    api, tenant_a, step_timer, recorder, monkeypatch, access_log
):
    from apps.api import throttling
    from apps.tenancy.models import ApiKey

    monkeypatch.setattr(throttling, "clock", lambda: 5000.0)
    throttling._local.clear()
    with tenant_context(tenant_a.tenant.id):
        ApiKey.objects.filter(tenant=tenant_a.tenant).update(rate_limit_per_s=0.5)  # bucket holds 1
    assert api.get("/api/v1/search", **tenant_a.auth).status_code == 200
    assert api.get("/api/v1/search", **tenant_a.auth).status_code == 429
    statuses = {(k[2], k[3]) for k in recorder.pending().requests if k[0] == tenant_a.tenant.id}
    assert statuses == {("search", "2xx"), ("search", "429")}
    assert json.loads(access_log.format(access_log.records[-1]))["tenant"] == tenant_a.slug

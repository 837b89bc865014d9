"""Rolling 1 h / 24 h / 28 d status from histograms: percentiles, share good, availability, budget."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.core.tenant_db import tenant_context
from apps.slo import buckets
from apps.slo.models import LatencyHistogram
from apps.slo.selectors import slo_status_for_tenant, slo_timeseries
from apps.slo.services import slo_histograms_compact
from tests.slo.timeline import per_minute, record


@pytest.fixture
def history(tenant_a, writer, now):
    """Known traffic for tenant A's ``recommend`` class (objective: 99% within 50 ms, 99.9% non-5xx).

    - 10 min ago: 90 at 10 ms, 9 at 40 ms, 1 at 300 ms                (in all three windows)
    - 5 h ago:    100 at 100 ms (all too slow)                          (24 h and 28 d)
    - 10 days ago: 790 at 5 ms, 10 answered 503, and 50 throttled (429) (28 d only)
    """
    tid = tenant_a.tenant.id
    recent = now - timedelta(minutes=10)
    record(writer, tid, recent, [10.0] * 90 + [40.0] * 9 + [300.0])
    record(writer, tid, now - timedelta(hours=5), [100.0] * 100)
    old = now - timedelta(days=10)
    record(writer, tid, old, [5.0] * 790)
    record(writer, tid, old, [5.0] * 10, status=503)
    record(writer, tid, old, [0.5] * 50, status=429)
    record(writer, tid, now - timedelta(days=29), [900.0] * 1000)  # outside every window
    record(writer, tid, now + timedelta(minutes=1), [900.0] * 1000)  # after "now": not yet seen
    writer.flush()
    return tid


def test_the_one_hour_window_reads_only_the_last_hour(history, now):
    w = slo_status_for_tenant(tenant_id=history, now=now).classes["recommend"].windows["1h"]
    assert (w.requests, w.served, w.errors, w.throttled) == (100, 100, 0, 0)
    assert w.p50_ms is not None and w.p95_ms is not None
    assert 8.0 < w.p50_ms <= 10.0
    assert 31.5 < w.p95_ms <= 40.0
    assert w.p99_ms == pytest.approx(40.0)
    assert w.share_good == pytest.approx(0.99)
    assert w.latency_burn_rate == pytest.approx(1.0)
    assert w.availability == 1.0


def test_the_24_hour_window_adds_the_slow_spell(history, now):
    w = slo_status_for_tenant(tenant_id=history, now=now).classes["recommend"].windows["24h"]
    assert w.served == 200
    assert w.share_good == pytest.approx(99 / 200)
    assert w.p50_ms is not None and w.p95_ms is not None and w.p99_ms is not None
    # sorted: 90 at 10 ms, 9 at 40 ms, 100 at 100 ms, 1 at 300 ms: ranks 100..199 are the 100 ms bucket
    assert 80.0 < w.p50_ms < 81.0
    assert 80.0 < w.p95_ms < w.p99_ms <= 100.0


def test_the_28_day_window_gives_budget_and_keeps_throttled_requests_out_of_both_slis(history, now):
    status = slo_status_for_tenant(tenant_id=history, now=now).classes["recommend"]
    w = status.windows["28d"]
    assert (w.requests, w.served, w.errors, w.throttled) == (1050, 990, 10, 50)
    assert w.share_good == pytest.approx((99 + 790) / 990)
    assert w.availability == pytest.approx(1 - 10 / 1000)
    # budget: 1% of 990 served may be slow (9.9), 101 were: 10.2x overspent
    assert status.latency_budget_remaining_raw == pytest.approx(1 - (101 / 990) / 0.01)
    assert status.availability_budget_remaining_raw == pytest.approx(1 - (10 / 1000) / 0.001)
    # shown bounded: -100 % is as far as it goes ("exhausted")
    assert status.latency_budget_remaining == status.availability_budget_remaining == -1.0
    assert status.meets_objective is False and status.verdict == "budget_exhausted"
    assert (status.judged, status.sample, status.min_sample) == (True, 1000, 100)


def test_a_class_with_no_traffic_is_not_judged_and_has_no_percentiles(history, now):
    search = slo_status_for_tenant(tenant_id=history, now=now).classes["search"]
    assert search.windows["28d"].requests == 0 and search.windows["28d"].p99_ms is None
    assert search.latency_budget_remaining is None and search.meets_objective is None
    assert search.summary == "not enough traffic yet (0 of 100 requests)"


def test_another_tenant_sees_none_of_it(history, tenant_b, now):
    status = slo_status_for_tenant(tenant_id=tenant_b.tenant.id, now=now)
    assert all(w.requests == 0 for c in status.classes.values() for w in c.windows.values())


def test_rolling_minutes_up_into_hours_keeps_every_window_s_counts(history, now):
    before = slo_status_for_tenant(tenant_id=history, now=now)
    with tenant_context(history):
        minute_rows_before = LatencyHistogram.objects.filter(tenant_id=history, width_s=60).count()
    slo_histograms_compact(now=now)
    slo_histograms_compact(now=now)  # idempotent
    after = slo_status_for_tenant(tenant_id=history, now=now)
    with tenant_context(history):
        rows = list(LatencyHistogram.objects.filter(tenant_id=history).order_by("start"))
    # the 10-day-old minute rows became hour rows; the 29-day-old ones are kept until retention (35 d)
    assert minute_rows_before > sum(r.width_s == 60 for r in rows)
    assert {r.width_s for r in rows if r.start < now - timedelta(hours=9)} == {3600}
    for cls in before.classes:
        for label in ("1h", "24h", "28d"):
            b, a = before.classes[cls].windows[label], after.classes[cls].windows[label]
            assert (a.requests, a.served, a.errors, a.throttled, a.p99_ms) == (
                b.requests,
                b.served,
                b.errors,
                b.throttled,
                b.p99_ms,
            )


def test_retention_deletes_rows_older_than_35_days(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(days=36), [1.0])
    writer.flush()
    slo_histograms_compact(now=now)
    with tenant_context(tid):
        assert not LatencyHistogram.objects.filter(tenant_id=tid).exists()


def test_the_dashboard_series_gives_one_point_per_step(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    start = now.replace(second=0) - timedelta(minutes=30)
    per_minute(writer, tid, start, 10, [10.0] * 20)  # minutes 0-9: fast
    per_minute(writer, tid, start + timedelta(minutes=20), 10, [80.0] * 20)  # minutes 20-29: slow
    writer.flush()
    series = slo_timeseries(
        tenant_id=tid, endpoint_class="recommend", start=start, end=start + timedelta(minutes=30), step_s=600
    )
    assert [p.requests for p in series.points] == [200, 0, 200]
    assert series.points[0].p99_ms is not None and series.points[2].p99_ms is not None
    assert series.points[0].p99_ms <= 10.0 and series.points[2].p99_ms > 63.0
    assert [p.share_good for p in series.points] == [1.0, None, 0.0]
    assert series.objective.latency_threshold_ms == 50.0 and series.step_s == 600


def test_get_slo_returns_objectives_and_status_for_the_key_s_tenant(api, tenant_a, writer):
    from django.utils import timezone

    record(writer, tenant_a.tenant.id, timezone.now() - timedelta(minutes=2), [10.0] * 10, cls="search")
    writer.flush()
    response = api.get("/api/v1/slo", **tenant_a.auth)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["tenant"] == tenant_a.slug
    assert body["objectives"]["recommend"] == {
        "endpoint_class": "recommend",
        "latency_threshold_ms": 50.0,
        "latency_target": 0.99,
        "availability_target": 0.999,
        "is_default": True,
        "updated_at": None,
        "updated_by": "",
    }
    hour = body["status"]["search"]["windows"]["1h"]
    assert hour["requests"] == 10 and hour["share_good"] == 1.0
    assert set(body["status"]["search"]["windows"]) == {"1h", "24h", "28d"}
    # ten requests are too few to judge: no budget, no burn rate, and a sentence saying so
    assert body["status"]["search"]["latency_budget_remaining"] is None
    assert hour["latency_burn_rate"] is None and hour["judged"] is False
    assert body["status"]["search"]["summary"] == "not enough traffic yet (10 of 100 requests)"
    assert body["open_alerts"] == []


def test_get_slo_is_in_the_openapi_schema(anon, live_db):
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/v1/slo"]["get"]
    ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    typed = schema["components"]["schemas"][ref]
    assert typed["type"] == "object"
    assert {"tenant", "now", "objectives", "status", "open_alerts"} <= set(typed["required"])


def test_get_slo_needs_the_serve_scope(api, live_db):
    from tests.support import make_tenant

    ingest_only = make_tenant("ing", scopes=["ingest"])
    assert api.get("/api/v1/slo", **ingest_only.auth).status_code == 403


def test_bucket_counts_survive_the_database_round_trip(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    durations = [0.05, 0.1, 0.11, 49.9, 50.0, 50.1, 999_999.0, 2e6]
    record(writer, tid, now - timedelta(minutes=1), durations)
    writer.flush()
    with tenant_context(tid):
        (row,) = LatencyHistogram.objects.filter(tenant_id=tid)
    expected = buckets.empty()
    for d in durations:
        expected[buckets.bucket_index(d)] += 1
    assert row.counts == expected and row.total == len(durations)

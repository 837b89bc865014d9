"""Judging fairly: no verdict from a handful of requests (``SLO_MIN_SAMPLE``), budgets bounded for
display with the raw figure kept, and batch writes judged by their size class (``ingest`` up to
``SLO_INGEST_SMALL_MAX`` records, ``ingest_batch`` above). Time is injected, never slept."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest

from apps.slo import buckets
from apps.slo.recorder import Recorder
from apps.slo.selectors import slo_alerts_for_tenant, slo_status_for_tenant
from apps.slo.services import slo_alerts_evaluate
from tests.slo.timeline import per_minute, record


def open_alerts(tenant_id: int) -> set[tuple[str, str, str]]:
    return {
        (a.endpoint_class, a.sli, a.severity)
        for a in slo_alerts_for_tenant(tenant_id=tenant_id, open_only=True)
    }


def pending_classes(recorder: Recorder, tenant_id: int) -> Counter[tuple[str, str]]:
    """(endpoint class, status class) -> requests buffered for ``tenant_id``."""
    out: Counter[tuple[str, str]] = Counter()
    for (tid, _, cls, status_class), cell in recorder.pending().requests.items():
        if tid == tenant_id:
            out[(cls, status_class)] += cell.total
    return out


# --- the minimum sample -------------------------------------------------------------------------


def test_five_cold_requests_are_not_judged(tenant_a, writer, now):
    # the new user: five requests, every one slow (a cold start)
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(minutes=10), [300.0] * 5)
    writer.flush()
    rec = slo_status_for_tenant(tenant_id=tid, now=now).classes["recommend"]
    assert rec.judged is False and rec.verdict == "not_enough_traffic"
    assert rec.summary == "not enough traffic yet (5 of 100 requests)"
    assert rec.latency_budget_remaining is None and rec.latency_budget_remaining_raw is None
    assert rec.availability_budget_remaining is None and rec.meets_objective is None
    assert all(w.latency_burn_rate is None and w.availability_burn_rate is None for w in rec.windows.values())
    # what was measured is still shown: only the judgement waits
    hour = rec.windows["1h"]
    assert hour.requests == 5 and hour.share_good == 0.0 and hour.p99_ms is not None


def test_one_request_short_of_the_minimum_is_not_judged_and_the_minimum_is(tenant_a, tenant_b, writer, now):
    short, enough = tenant_a.tenant.id, tenant_b.tenant.id
    record(writer, short, now - timedelta(minutes=10), [300.0] * 99)
    record(writer, enough, now - timedelta(minutes=10), [300.0] * 100)
    writer.flush()
    below = slo_status_for_tenant(tenant_id=short, now=now).classes["recommend"]
    at = slo_status_for_tenant(tenant_id=enough, now=now).classes["recommend"]
    assert (
        below.summary == "not enough traffic yet (99 of 100 requests)"
        and below.windows["28d"].latency_burn_rate is None
    )
    assert at.judged is True and at.windows["28d"].latency_burn_rate == pytest.approx(100.0)
    assert (
        at.verdict == "budget_exhausted"
        and at.summary == "error budget exhausted"
        and at.meets_objective is False
    )


def test_throttled_requests_do_not_count_towards_the_minimum(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(minutes=10), [10.0] * 99)
    record(writer, tid, now - timedelta(minutes=10), [0.5] * 50, status=429)
    writer.flush()
    rec = slo_status_for_tenant(tenant_id=tid, now=now).classes["recommend"]
    assert rec.judged is False and rec.sample == 99 and rec.windows["1h"].requests == 149


def test_each_window_is_judged_on_its_own_sample(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(minutes=10), [300.0] * 50)  # the last hour: 50 requests
    record(writer, tid, now - timedelta(hours=5), [10.0] * 150)  # the day: 200
    writer.flush()
    windows = slo_status_for_tenant(tenant_id=tid, now=now).classes["recommend"].windows
    assert (windows["1h"].judged, windows["1h"].latency_burn_rate) == (False, None)
    assert windows["24h"].judged is True and windows["24h"].latency_burn_rate == pytest.approx(25.0)


def test_the_minimum_sample_is_a_setting(settings, tenant_a, writer, now):
    settings.SOTTO = {**settings.SOTTO, "SLO_MIN_SAMPLE": 5}
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(minutes=10), [300.0] * 5)
    writer.flush()
    rec = slo_status_for_tenant(tenant_id=tid, now=now).classes["recommend"]
    assert rec.judged is True and rec.min_sample == 5


# --- the bounded budget -------------------------------------------------------------------------


def test_an_overspent_budget_is_shown_bounded_and_the_api_keeps_the_raw_figure(
    settings, api, tenant_a, writer
):
    from django.utils import timezone

    settings.SOTTO = {**settings.SOTTO, "SLO_MIN_SAMPLE": 5}
    record(writer, tenant_a.tenant.id, timezone.now() - timedelta(minutes=2), [300.0] * 5)
    writer.flush()
    body = api.get("/api/v1/slo", **tenant_a.auth).json()
    recommend = body["status"]["recommend"]
    # 1 % of 5 requests may be slow, 5 were: the budget is spent 100 times, i.e. -9900 % left
    assert recommend["latency_budget_remaining_raw"] == pytest.approx(-99.0)
    assert recommend["latency_budget_remaining"] == -1.0
    assert recommend["verdict"] == "budget_exhausted" and recommend["meets_objective"] is False
    # nothing failed: the availability budget is whole, and not bounded away from it
    assert recommend["availability_budget_remaining"] == 1.0


# --- no alert below the minimum sample ----------------------------------------------------------


@pytest.mark.parametrize(("per_minute_requests", "pages"), [(19, False), (20, True)])
def test_a_burn_pages_only_from_the_minimum_sample(tenant_a, writer, now, per_minute_requests, pages):
    # five minutes, every request slow (a 100x burn over 1 h and 5 min, and over 6 h and 30 min);
    # 95 requests are above SLO_ALERT_MIN_EVENTS (20) yet below SLO_MIN_SAMPLE (100)
    tid = tenant_a.tenant.id
    t0 = (now - timedelta(hours=2)).replace(second=0)
    per_minute(writer, tid, t0, 5, [300.0] * per_minute_requests)
    writer.flush()
    slo_alerts_evaluate(now=t0 + timedelta(minutes=5), tenant_ids=[tid])
    expected = {("recommend", "latency", "fast"), ("recommend", "latency", "slow")} if pages else set()
    assert open_alerts(tid) == expected


def test_a_quiet_hour_does_not_page_even_when_the_month_is_judged(tenant_a, writer, now):
    # a month that is judged (1000 good requests ten days ago), then a quiet hour: 50 slow requests.
    # The status gives that hour no burn rate, so no alert may claim one either.
    tid = tenant_a.tenant.id
    record(writer, tid, now - timedelta(days=10), [10.0] * 1000)
    t0 = (now - timedelta(hours=2)).replace(second=0)
    per_minute(writer, tid, t0, 5, [300.0] * 10)
    writer.flush()
    at = t0 + timedelta(minutes=5)
    rec = slo_status_for_tenant(tenant_id=tid, now=at).classes["recommend"]
    assert rec.judged is True and rec.windows["1h"].latency_burn_rate is None
    slo_alerts_evaluate(now=at, tenant_ids=[tid])
    assert open_alerts(tid) == set()


# --- batch writes by size class -----------------------------------------------------------------


def events(n: int) -> dict[str, Any]:
    return {"events": [{"event_id": str(i)} for i in range(n)]}


def items(n: int) -> dict[str, Any]:
    return {"items": [{"id": str(i)} for i in range(n)]}


@pytest.mark.parametrize(
    ("method", "path", "size", "expected"),
    [
        ("POST", "/api/v1/events", None, "ingest"),  # size unknown: the single-write class
        ("POST", "/api/v1/events", 100, "ingest"),
        ("POST", "/api/v1/events", 101, "ingest_batch"),
        ("POST", "/api/v1/items/", 1000, "ingest_batch"),
        ("GET", "/api/v1/items", 1000, "other"),  # a listing is no batch write
        ("PUT", "/api/v1/users/u-1", 1000, "ingest"),  # one user's attributes: one record
        ("GET", "/api/v1/items/i-1/similar", 1000, "recommend"),
    ],
)
def test_only_the_batch_endpoints_are_classed_by_size(method, path, size, expected):
    from apps.slo.endpoints import batch_key, endpoint_class

    assert endpoint_class(method, path, batch_size=size) == expected
    assert (batch_key(method, path) is not None) == (method == "POST" and "/users/" not in path)


@pytest.mark.usefixtures("probe_urls")
def test_a_batch_write_is_classed_by_how_many_records_it_carries(api, tenant_a, step_timer, recorder):
    sizes = [
        ("/api/v1/events", events(1)),
        ("/api/v1/events", events(100)),
        ("/api/v1/events", events(101)),
        ("/api/v1/events", events(1000)),
        ("/api/v1/items", items(100)),
        ("/api/v1/items", items(1000)),
    ]
    durations = [5.0, 40.0, 350.0, 700.0, 30.0, 900.0]  # none on a bucket bound
    step_timer.queue.extend(durations)
    for path, body in sizes:
        assert api.post(path, body, format="json", **tenant_a.auth).status_code == 200
    assert api.put("/api/v1/users/u-1", {}, format="json", **tenant_a.auth).status_code == 200  # one record
    assert pending_classes(recorder, tenant_a.tenant.id) == {("ingest", "2xx"): 4, ("ingest_batch", "2xx"): 3}
    batch = next(
        c
        for k, c in recorder.pending().requests.items()
        if k[0] == tenant_a.tenant.id and k[2] == "ingest_batch"
    )
    assert [i for i, n in enumerate(batch.counts) if n] == sorted(
        buckets.bucket_index(d) for d in (350.0, 700.0, 900.0)
    )


@pytest.mark.usefixtures("probe_urls")
def test_the_size_boundary_is_a_setting(settings, api, tenant_a, step_timer, recorder):
    settings.SOTTO = {**settings.SOTTO, "SLO_INGEST_SMALL_MAX": 10}
    api.post("/api/v1/events", events(10), format="json", **tenant_a.auth)
    api.post("/api/v1/events", events(11), format="json", **tenant_a.auth)
    assert pending_classes(recorder, tenant_a.tenant.id) == {("ingest", "2xx"): 1, ("ingest_batch", "2xx"): 1}


@pytest.mark.usefixtures("probe_urls")
def test_a_size_noted_by_the_view_wins_and_an_unparsed_body_counts_as_ingest(
    api, tenant_a, step_timer, recorder
):
    api.post("/api/v1/events?note=500", events(1), format="json", **tenant_a.auth)
    bad = api.post("/api/v1/events", "{not json", content_type="application/json", **tenant_a.auth)
    assert bad.status_code == 400
    assert pending_classes(recorder, tenant_a.tenant.id) == {("ingest_batch", "2xx"): 1, ("ingest", "4xx"): 1}


def test_the_real_batch_endpoints_are_classed_by_size(api, tenant_a, recorder):
    auth = tenant_a.auth
    with mock.patch("apps.catalog.services.encoding_enqueue"):
        stored = api.post(
            "/api/v1/items",
            {"items": [{"id": f"i{k}", "title": f"Item {k}"} for k in range(150)]},
            format="json",
            **auth,
        )
    assert stored.status_code == 200, stored.content
    few = [{"event_id": f"e{k}", "user": "u1", "item": f"i{k}", "type": "view"} for k in range(3)]
    assert api.post("/api/v1/events", {"events": few}, format="json", **auth).status_code == 201
    too_many = [{"event_id": f"x{k}", "user": "u1", "item": "i1", "type": "view"} for k in range(1001)]
    assert api.post("/api/v1/events", {"events": too_many}, format="json", **auth).status_code == 413
    assert pending_classes(recorder, tenant_a.tenant.id) == {
        ("ingest_batch", "2xx"): 1,
        ("ingest", "2xx"): 1,
        ("ingest_batch", "4xx"): 1,
    }


def test_a_batch_is_judged_against_its_own_objective(tenant_a, writer, now):
    # 600 ms: fine for a batch of up to 1000 records (1000 ms), far too slow for a single write (200 ms)
    tid = tenant_a.tenant.id
    t0 = (now - timedelta(hours=2)).replace(second=0)
    per_minute(writer, tid, t0, 5, [600.0] * 40, cls="ingest_batch")
    per_minute(writer, tid, t0, 5, [600.0] * 40, cls="ingest")
    writer.flush()
    at = t0 + timedelta(minutes=5)
    status = slo_status_for_tenant(tenant_id=tid, now=at).classes
    assert (
        status["ingest_batch"].verdict == "meets" and status["ingest_batch"].latency_budget_remaining == 1.0
    )
    assert status["ingest"].verdict == "budget_exhausted"
    slo_alerts_evaluate(now=at, tenant_ids=[tid])
    assert open_alerts(tid) == {("ingest", "latency", "fast"), ("ingest", "latency", "slow")}

"""``/metrics``: Prometheus text from prometheus_client, request and task histograms from the
database, open alerts, optional model facts; only for loopback or the bearer token."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from apps.slo.recorder import Batch, Cell
from apps.slo.services import slo_alerts_evaluate, slo_histograms_write
from tests.slo.timeline import per_minute, record


def families(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(response.content.decode())}


def samples(family, **labels):
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_request_histograms_by_tenant_class_and_status(anon, tenant_a, writer):
    record(writer, tenant_a.tenant.id, timezone.now(), [3.0, 40.0, 40.0, 700.0], cls="search")
    record(writer, tenant_a.tenant.id, timezone.now(), [1.0], cls="search", status=429)
    writer.flush()
    got = families(anon.get("/metrics"))["sotto_http_request_duration_seconds"]
    assert got.type == "histogram"
    ok = {
        s.name + s.labels.get("le", ""): s.value
        for s in samples(got, tenant=tenant_a.slug, endpoint_class="search", status_class="2xx")
    }
    assert ok["sotto_http_request_duration_seconds_count"] == 4
    assert ok["sotto_http_request_duration_seconds_sum"] == pytest.approx(0.783)
    assert ok["sotto_http_request_duration_seconds_bucket0.004"] == 1
    assert ok["sotto_http_request_duration_seconds_bucket0.04"] == 3
    assert ok["sotto_http_request_duration_seconds_bucket0.63"] == 3
    assert ok["sotto_http_request_duration_seconds_bucket1.0"] == 4
    assert ok["sotto_http_request_duration_seconds_bucket+Inf"] == 4
    throttled = samples(got, tenant=tenant_a.slug, status_class="429")
    assert [s.value for s in throttled if s.name.endswith("_count")] == [1]


def test_counters_only_grow_even_when_minute_rows_are_rolled_up(anon, tenant_a, writer):
    from apps.slo.services import slo_histograms_compact

    record(
        writer, tenant_a.tenant.id, timezone.now() - timedelta(days=40), [5.0]
    )  # soon deleted by retention
    writer.flush()
    slo_histograms_compact()
    got = families(anon.get("/metrics"))["sotto_http_request_duration_seconds"]
    assert [s.value for s in samples(got, tenant=tenant_a.slug) if s.name.endswith("_count")] == [1]


def test_task_histograms_by_queue_and_state(anon, live_db):
    queue = f"q{timezone.now().timestamp():.0f}"
    cell = Cell()
    cell.add(3, 0.3)
    cell.add(40, 900.0)
    slo_histograms_write(batch=Batch(requests={}, tasks={(queue, "success"): cell}))
    got = families(anon.get("/metrics"))["sotto_celery_task_duration_seconds"]
    count = [s.value for s in samples(got, queue=queue, state="success") if s.name.endswith("_count")]
    assert count == [2]


def test_open_alerts_are_exported(anon, tenant_a, writer):
    t0 = timezone.now().replace(second=0, microsecond=0) - timedelta(hours=1)
    per_minute(writer, tenant_a.tenant.id, t0, 10, [300.0] * 50)
    writer.flush()
    slo_alerts_evaluate(now=t0 + timedelta(minutes=10), tenant_ids=[tenant_a.tenant.id])
    got = families(anon.get("/metrics"))["sotto_slo_alert_firing"]
    mine = {(s.labels["sli"], s.labels["severity"]) for s in samples(got, tenant=tenant_a.slug)}
    assert mine == {("latency", "fast"), ("latency", "slow")}


def test_a_client_that_is_not_loopback_is_refused_without_a_token(anon, live_db):
    assert anon.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert anon.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_with_a_token_only_its_bearer_may_scrape_even_from_loopback(anon, live_db, settings):
    settings.SOTTO = {**settings.SOTTO, "METRICS_TOKEN": "s3cret-metrics-token"}
    assert anon.get("/metrics").status_code == 401
    assert anon.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    ok = anon.get("/metrics", REMOTE_ADDR="10.1.2.3", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token")
    assert ok.status_code == 200


def test_metrics_are_not_an_api_route_and_not_a_tenant_s_business(api, tenant_a):
    # an API key is no credential for /metrics
    assert api.get("/metrics", REMOTE_ADDR="10.1.2.3", **tenant_a.auth).status_code == 403


def test_model_version_and_privacy_budget_come_from_modeling(anon, tenant_a, monkeypatch):
    from apps.modeling import selectors
    from apps.modeling.budget import privacy_budget_set

    privacy_budget_set(tenant=tenant_a.tenant, epsilon_total=3.5, delta=1e-6, actor="test")
    monkeypatch.setattr(
        selectors, "active_version", lambda tenant_id: 7 if tenant_id == tenant_a.tenant.id else None
    )
    got = families(anon.get("/metrics"))
    versions = samples(got["sotto_model_active_version_info"], tenant=tenant_a.slug)
    assert [(s.labels["version"], s.value) for s in versions] == [("7", 1.0)]
    budget = samples(got["sotto_privacy_budget_epsilon_remaining"], tenant=tenant_a.slug)
    assert [s.value for s in budget] == [3.5]


def test_a_failing_modeling_selector_leaves_its_tenant_out_and_the_scrape_up(anon, tenant_a, monkeypatch):
    from apps.modeling import selectors

    def broken(tenant_id: int) -> int:
        raise RuntimeError("modeling bug")

    monkeypatch.setattr(selectors, "active_version", broken)
    got = families(anon.get("/metrics"))
    assert samples(got["sotto_model_active_version_info"], tenant=tenant_a.slug) == []
    assert samples(got["sotto_privacy_budget_epsilon_remaining"], tenant=tenant_a.slug) == []

"""Multi-window burn-rate alerts: raised when both windows burn fast, cleared when the short one
recovers; each raise and clear audited and visible to the tenant. Time is injected, never slept."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apps.slo.selectors import slo_alerts_for_tenant, slo_status_for_tenant
from apps.slo.services import slo_alerts_evaluate, slo_objective_set
from tests.slo.timeline import per_minute

GOOD = [10.0] * 100
HALF_SLOW = [10.0] * 50 + [300.0] * 50  # 50% over the 50 ms threshold: burn rate 50 at 99%


def open_alerts(tenant_id):
    return {
        (a.endpoint_class, a.sli, a.severity)
        for a in slo_alerts_for_tenant(tenant_id=tenant_id, open_only=True)
    }


def evaluate(tenant_id, at):
    return slo_alerts_evaluate(now=at, tenant_ids=[tenant_id])


@pytest.fixture
def incident(tenant_a, writer, now):
    """Tenant A's recommendations: 10 slow minutes from t0, then good minutes until t0 + 20 min."""
    t0 = (now - timedelta(hours=2)).replace(second=0)  # windows then hold whole minutes
    per_minute(writer, tenant_a.tenant.id, t0, 10, HALF_SLOW)
    per_minute(writer, tenant_a.tenant.id, t0 + timedelta(minutes=10), 10, GOOD)
    writer.flush()
    return tenant_a.tenant.id, t0


def test_a_fast_burn_raises_both_alerts_and_the_short_windows_clear_them_in_turn(incident, audit_calls):
    tid, t0 = incident
    # at t0+10: 1 h and 5 min both burn at 50x; 6 h and 30 min too (the minute starting at t0+10 is not in)
    result = evaluate(tid, t0 + timedelta(minutes=10))
    assert result.raised == 2
    assert open_alerts(tid) == {("recommend", "latency", "fast"), ("recommend", "latency", "slow")}
    alerts = {a.severity: a for a in slo_alerts_for_tenant(tenant_id=tid)}
    assert alerts["fast"].burn_long == pytest.approx(50.0) and alerts["fast"].burn_short == pytest.approx(
        50.0
    )
    assert alerts["fast"].factor == 14.4 and (
        alerts["fast"].long_window_s,
        alerts["fast"].short_window_s,
    ) == (3600, 300)
    # evaluating again changes nothing
    assert evaluate(tid, t0 + timedelta(minutes=10, seconds=20)).raised == 0
    # at t0+20: the last 5 min are clean -> fast clears although the last hour still burns at 25x;
    # the last 30 min still hold the whole incident -> slow stays
    result = evaluate(tid, t0 + timedelta(minutes=20))
    assert (result.raised, result.cleared) == (0, 1)
    assert open_alerts(tid) == {("recommend", "latency", "slow")}
    # at t0+45: the 30 min window holds only clean minutes -> slow clears
    assert evaluate(tid, t0 + timedelta(minutes=45)).cleared == 1
    assert open_alerts(tid) == set()
    history = slo_alerts_for_tenant(tenant_id=tid)
    assert len(history) == 2 and all(a.cleared_at is not None for a in history)
    # every raise and clear went to the audit chain
    actions = [
        (c["action"], c["details"]["severity"]) for c in audit_calls if c["action"].startswith("slo.alert")
    ]
    assert sorted(actions) == sorted(
        [
            ("slo.alert.raise", "fast"),
            ("slo.alert.raise", "slow"),
            ("slo.alert.clear", "fast"),
            ("slo.alert.clear", "slow"),
        ]
    )
    assert all(
        c["tenant_id"] == tid and c["actor"] == "system:slo"
        for c in audit_calls
        if c["action"].startswith("slo.alert")
    )


def test_a_long_window_burning_alone_does_not_page(incident):
    tid, t0 = incident
    # first look at t0+20: the hour burns at 25x but the last 5 minutes are clean
    evaluate(tid, t0 + timedelta(minutes=20))
    assert ("recommend", "latency", "fast") not in open_alerts(tid)


def test_a_short_spike_inside_a_quiet_hour_does_not_page(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    t0 = now - timedelta(hours=3)
    per_minute(writer, tid, t0, 55, GOOD)
    per_minute(writer, tid, t0 + timedelta(minutes=55), 3, HALF_SLOW)  # 150 slow of 5800 in the hour: 2.6x
    writer.flush()
    evaluate(tid, t0 + timedelta(minutes=58))
    assert open_alerts(tid) == set()


def test_server_errors_raise_an_availability_alert(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    t0 = now - timedelta(hours=2)
    per_minute(writer, tid, t0, 10, [5.0] * 98, cls="search")
    per_minute(writer, tid, t0, 10, [5.0] * 2, cls="search", status=503)  # 2% errors vs 0.1% allowed: 20x
    writer.flush()
    evaluate(tid, t0 + timedelta(minutes=10))
    assert open_alerts(tid) == {("search", "availability", "fast"), ("search", "availability", "slow")}


def test_throttled_requests_never_raise_an_alert(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    t0 = now - timedelta(hours=2)
    per_minute(writer, tid, t0, 10, [1.0] * 100, status=429)
    writer.flush()
    evaluate(tid, t0 + timedelta(minutes=10))
    assert open_alerts(tid) == set()


def test_too_few_requests_do_not_page(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    t0 = now - timedelta(hours=2)
    per_minute(writer, tid, t0, 5, [300.0] * 3)  # 15 slow requests < SLO_ALERT_MIN_EVENTS (20)
    writer.flush()
    evaluate(tid, t0 + timedelta(minutes=5))
    assert open_alerts(tid) == set()


def test_a_looser_objective_is_what_alerts_are_judged_against(tenant_a, writer, now):
    tid = tenant_a.tenant.id
    slo_objective_set(
        tenant_id=tid,
        endpoint_class="recommend",
        latency_threshold_ms=400.0,
        latency_target=0.99,
        availability_target=0.999,
        actor="test",
    )
    t0 = now - timedelta(hours=2)
    per_minute(writer, tid, t0, 10, HALF_SLOW)  # 300 ms is now within the objective
    writer.flush()
    evaluate(tid, t0 + timedelta(minutes=10))
    assert open_alerts(tid) == set()


def test_open_alerts_show_in_the_status_and_only_to_their_tenant(incident, tenant_b):
    tid, t0 = incident
    evaluate(tid, t0 + timedelta(minutes=10))
    status = slo_status_for_tenant(tenant_id=tid, now=t0 + timedelta(minutes=10))
    assert {(a.sli, a.severity) for a in status.open_alerts} == {("latency", "fast"), ("latency", "slow")}
    assert slo_alerts_for_tenant(tenant_id=tenant_b.tenant.id) == []
    assert slo_status_for_tenant(tenant_id=tenant_b.tenant.id).open_alerts == []


def test_the_beat_task_is_registered_and_scheduled():
    from celery import current_app

    import apps.slo.tasks  # noqa: F401 - what the worker's and beat's autodiscovery import
    from config.schedules import beat_schedule

    assert "sotto.slo.evaluate_alerts" in current_app.tasks
    assert beat_schedule()["slo-flush-and-alerts"]["task"] == "sotto.slo.evaluate_alerts"


def test_the_task_evaluates_every_tenant(incident, monkeypatch):
    from apps.slo import tasks
    from apps.slo.services import slo_alerts_evaluate as real

    tid, t0 = incident
    monkeypatch.setattr(tasks, "slo_alerts_evaluate", lambda: real(now=t0 + timedelta(minutes=10)))
    result = tasks.evaluate_alerts.run()
    assert result["raised"] >= 2 and result["tenants"] >= 1
    assert ("recommend", "latency", "fast") in open_alerts(tid)

"""The model lifecycle a tenant admin runs: budget policy with renewal, scheduled retraining, versions.

Personas: ``tenant_a`` (all-scopes key, incl. ``admin``), a train-only key (may read, not change),
``tenant_b`` (must never touch A's versions). Runs train in process (no broker).
"""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from apps.audit.models import AuditEvent
from apps.core.tenant_db import tenant_context
from apps.modeling import lifecycle, selectors, served, services, training
from apps.modeling.models import ActiveModel, LedgerEntry, ModelVersion, RetrainSchedule, TrainingRun
from apps.tenancy.services import api_key_create
from tests.modeling.support import seed_tenant, set_modeling
from tests.support import make_tenant

BUDGET = "/api/v1/privacy-budget"
SETTINGS = "/api/v1/tenant/settings"


def _tid(persona):
    return persona.tenant.id


def _auth(raw):
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def _ledger_count(tid):
    with tenant_context(tid):
        return LedgerEntry.objects.filter(tenant_id=tid).count()


def _audit(tid, action):
    with tenant_context(tid):
        return list(AuditEvent.objects.filter(tenant_id=tid, action=action).order_by("id"))


def _start(persona, epsilon):
    original = services._enqueue
    services._enqueue = lambda tenant_id, run_id: None
    try:
        return services.training_run_start(tenant_id=_tid(persona), epsilon=epsilon, actor="test")["id"]
    finally:
        services._enqueue = original


# --- budget policy ---------------------------------------------------------------------------------


def test_an_admin_sets_a_rolling_budget_and_the_ledger_shows_spent_left_and_next_renewal(
    tenant_a, api, queued
):
    seed_tenant(tenant_a)
    response = api.patch(BUDGET, {"epsilon_total": 6.0, "renewal_days": 30}, format="json", **tenant_a.auth)
    assert response.status_code == 200, response.content
    assert (
        api.post("/api/v1/training-runs", {"epsilon": 4.0}, format="json", **tenant_a.auth).status_code == 202
    )

    body = api.get(BUDGET, **tenant_a.auth).json()

    assert body["policy"] == "rolling" and body["renewal_days"] == 30
    assert body["epsilon_spent"] == pytest.approx(4.0) and body["epsilon_remaining"] == pytest.approx(2.0)
    assert body["next_renewal_at"] is not None and body["epsilon_renewed_then"] == pytest.approx(4.0)
    # 31 days later the charge has left the window: everything is left again, the lifetime sum stays
    later = selectors.privacy_budget(tenant_id=_tid(tenant_a), now=timezone.now() + timedelta(days=31))
    assert later["epsilon_spent"] == 0.0 and later["epsilon_remaining"] == pytest.approx(6.0)
    assert later["epsilon_spent_lifetime"] == pytest.approx(4.0) and later["next_renewal_at"] is None
    [event] = _audit(_tid(tenant_a), "privacy.budget.set")
    assert event.details["renewal_days"] == 30 and event.details["previous"]["renewal_days"] is None


def test_charges_older_than_the_window_do_not_count_when_charging(tenant_a, api, queued, monkeypatch):
    seed_tenant(tenant_a)
    api.patch(BUDGET, {"epsilon_total": 5.0, "renewal_days": 7}, format="json", **tenant_a.auth)
    assert (
        api.post("/api/v1/training-runs", {"epsilon": 5.0}, format="json", **tenant_a.auth).status_code == 202
    )
    refused = api.post("/api/v1/training-runs", {"epsilon": 1.0}, format="json", **tenant_a.auth)
    assert refused.status_code == 409 and "in the last 7 days" in refused.json()["error"]["message"]

    future = timezone.now() + timedelta(days=8)
    monkeypatch.setattr("apps.modeling.budget.timezone.now", lambda: future)

    assert (
        api.post("/api/v1/training-runs", {"epsilon": 5.0}, format="json", **tenant_a.auth).status_code == 202
    )
    assert _ledger_count(_tid(tenant_a)) == 2


@pytest.mark.parametrize(
    "body, field",
    [
        ({"epsilon_total": 0}, "epsilon_total"),
        ({"epsilon_total": -1}, "epsilon_total"),
        ({"epsilon_total": "NaN"}, "epsilon_total"),
        ({"epsilon_total": "Infinity"}, "epsilon_total"),
        ({"epsilon_total": 1000.0}, "epsilon_total"),  # above the operator cap (64)
        ({"delta": 1.5}, "delta"),
        ({"renewal_days": 1}, "renewal_days"),  # shorter than the operator's minimum (7)
        ({"renewal_days": 7.5}, "renewal_days"),
        ({"epsilon": 4.0}, "epsilon"),  # unknown field: refused, not ignored
        ({"epsilon_total": True}, "epsilon_total"),  # not taken as 1.0
        ({"epsilon_total": "8"}, "epsilon_total"),
    ],
)
def test_a_bad_budget_policy_is_a_400_with_the_reason_and_changes_nothing(tenant_a, api, body, field):
    before = api.get(BUDGET, **tenant_a.auth).json()

    response = api.patch(BUDGET, body, format="json", **tenant_a.auth)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert field in error["message"] or field in error["details"]
    after = api.get(BUDGET, **tenant_a.auth).json()
    assert (after["epsilon_total"], after["delta"], after["renewal_days"]) == (
        before["epsilon_total"],
        before["delta"],
        before["renewal_days"],
    )
    assert _audit(_tid(tenant_a), "privacy.budget.set") == []


def test_a_train_only_key_reads_the_budget_but_cannot_change_it(tenant_a, api):
    raw = api_key_create(tenant=tenant_a.tenant, name="trainer", scopes=["train"]).raw

    assert api.get(BUDGET, **_auth(raw)).status_code == 200
    assert api.patch(BUDGET, {"epsilon_total": 8.0}, format="json", **_auth(raw)).status_code == 403
    assert (
        api.patch(SETTINGS, {"model": {"dp_design": "tower"}}, format="json", **_auth(raw)).status_code == 403
    )


# --- settings document -----------------------------------------------------------------------------


def test_settings_round_trip_every_part_and_each_change_is_audited(tenant_a, api):
    patch = {
        "model": {"dp_design": "tower"},
        "privacy_budget": {"epsilon_total": 20.0, "renewal_days": 30},
        "retraining": {"cadence": "weekly", "epsilon_per_run": 2.0},
        "retention": {"event_retention_days": 90},
        "rate_limit_per_s": 50.0,
        "slo_objectives": {"recommend": {"latency_threshold_ms": 80.0}},
    }

    response = api.patch(SETTINGS, patch, format="json", **tenant_a.auth)

    assert response.status_code == 200, response.content
    body = api.get(SETTINGS, **tenant_a.auth).json()
    assert body["model"] == {"dp_design": "tower"}
    assert body["privacy_budget"]["epsilon_total"] == 20.0 and body["privacy_budget"]["renewal_days"] == 30
    assert body["retraining"]["cadence"] == "weekly" and body["retraining"]["epsilon_per_run"] == 2.0
    assert body["retention"] == {"event_retention_days": 90}
    assert body["rate_limit_per_s"] == 50.0
    assert body["slo_objectives"]["recommend"]["latency_threshold_ms"] == 80.0
    tid = _tid(tenant_a)
    for action in (
        "tenant.settings.update",
        "privacy.budget.set",
        "retraining.schedule.set",
        "slo.objective.set",
    ):
        assert _audit(tid, action), action


@pytest.mark.parametrize(
    "patch",
    [
        {"model": {"dp_design": "magic"}},
        {"retention": {"event_retention_days": 0}},
        {"rate_limit_per_s": -5},
        {"rate_limit_per_s": 1e6},  # above the operator's limit: a tenant may only lower it
        {"retraining": {"epsilon_per_run": True}},
        {"slo_objectives": {"recommend": {"latency_target": 2.0}}},
        {"slo_objectives": {"nope": {"latency_target": 0.9}}},
        {"retraining": {"cadence": "hourly"}},
        {"retraining": {"epsilon_per_run": 0}},
        {"retraining": {"last_attempt_at": "2020-01-01T00:00:00Z"}},  # read-only
        {"colour": "blue"},
    ],
)
def test_a_bad_settings_patch_is_a_400_and_nothing_of_it_is_applied(tenant_a, api, patch):
    before = api.get(SETTINGS, **tenant_a.auth).json()
    # a valid part beside the bad one must not be applied either (all or nothing)
    response = api.patch(
        SETTINGS,
        {"model": {"dp_design": "factors"}, **patch} if "model" not in patch else patch,
        format="json",
        **tenant_a.auth,
    )

    assert response.status_code == 400, response.content
    assert response.json()["error"]["message"]
    assert api.get(SETTINGS, **tenant_a.auth).json() == before


def test_a_schedule_that_would_exceed_the_budget_is_refused_with_the_arithmetic(tenant_a, api):
    lifetime = api.patch(
        SETTINGS, {"retraining": {"cadence": "daily", "epsilon_per_run": 1.0}}, format="json", **tenant_a.auth
    )
    assert lifetime.status_code == 400 and "lifetime budget" in lifetime.json()["error"]["message"]

    too_much = api.patch(
        SETTINGS,
        {
            "privacy_budget": {"epsilon_total": 16.0, "renewal_days": 30},
            "retraining": {"cadence": "daily", "epsilon_per_run": 1.0},
        },
        format="json",
        **tenant_a.auth,
    )
    assert too_much.status_code == 400
    assert "30 runs" in too_much.json()["error"]["message"] and "16" in too_much.json()["error"]["message"]
    assert api.get(BUDGET, **tenant_a.auth).json()["renewal_days"] is None  # the budget part rolled back too

    fits = api.patch(
        SETTINGS,
        {
            "privacy_budget": {"epsilon_total": 16.0, "renewal_days": 30},
            "retraining": {"cadence": "weekly", "epsilon_per_run": 3.0},
        },
        format="json",
        **tenant_a.auth,
    )
    assert fits.status_code == 200, fits.content  # ⌈30/7⌉ = 5 runs × 3 = 15 ≤ 16

    # lowering the budget under the schedule is refused as well
    lower = api.patch(BUDGET, {"epsilon_total": 10.0}, format="json", **tenant_a.auth)
    assert lower.status_code == 400 and "weekly" in lower.json()["error"]["message"]
    assert api.get(BUDGET, **tenant_a.auth).json()["epsilon_total"] == 16.0


# --- scheduled retraining --------------------------------------------------------------------------


def _schedule(persona, api, **retraining):
    response = api.patch(
        SETTINGS,
        {"privacy_budget": {"epsilon_total": 16.0, "renewal_days": 30}, "retraining": retraining},
        format="json",
        **persona.auth,
    )
    assert response.status_code == 200, response.content


def test_a_due_schedule_starts_one_charged_run_and_a_repeated_tick_charges_nothing(tenant_a, api, queued):
    seed_tenant(tenant_a)
    _schedule(tenant_a, api, cadence="weekly", epsilon_per_run=2.0)
    tid = _tid(tenant_a)

    first = lifecycle.retrain_due()
    again = lifecycle.retrain_due()  # the same tick delivered twice, or the next tick

    assert first["started"] >= 1 and again["started"] == 0
    with tenant_context(tid):
        runs = list(TrainingRun.objects.filter(tenant_id=tid))
        row = RetrainSchedule.objects.get(tenant_id=tid)
    assert len(runs) == 1 and runs[0].actor == lifecycle.SCHEDULE_ACTOR and runs[0].epsilon == 2.0
    assert _ledger_count(tid) == 1 and queued == [(tid, runs[0].pk)]
    assert row.last_run_id == runs[0].pk and row.last_error == ""
    # a week later (the run finished meanwhile) it is due again
    with tenant_context(tid):
        TrainingRun.objects.filter(pk=runs[0].pk).update(status="succeeded")
    assert lifecycle.retrain_due(now=timezone.now() + timedelta(days=6, hours=23, minutes=50))["started"] == 0
    later = lifecycle.retrain_due(now=timezone.now() + timedelta(days=7, minutes=1))
    assert later["started"] >= 1 and _ledger_count(tid) == 2


def test_an_events_schedule_waits_for_enough_new_events(tenant_a, api, queued):
    seed_tenant(tenant_a)  # 320 events
    _schedule(tenant_a, api, cadence="events", epsilon_per_run=0.5, min_new_events=1000)
    tid = _tid(tenant_a)

    lifecycle.retrain_due()
    assert _ledger_count(tid) == 0

    api.patch(SETTINGS, {"retraining": {"min_new_events": 100}}, format="json", **tenant_a.auth)
    lifecycle.retrain_due()
    assert _ledger_count(tid) == 1


def test_a_refused_scheduled_start_alerts_the_admin_and_is_audited(tenant_a, api, queued):
    _schedule(tenant_a, api, cadence="weekly", epsilon_per_run=2.0)  # no events: too few users
    tid = _tid(tenant_a)

    outcome = lifecycle.retrain_due()

    assert outcome["refused"] >= 1 and _ledger_count(tid) == 0
    alert = api.get(SETTINGS, **tenant_a.auth).json()["retraining"]["alert"]
    assert alert is not None and "users" in alert["message"]
    [event] = _audit(tid, "retraining.refused")
    assert event.details["code"] == "not_enough_users"
    assert lifecycle.retrain_due()["refused"] == 0  # not retried before the cadence says so


# --- versions ---------------------------------------------------------------------------------------


@pytest.fixture
def two_versions(live_db):
    persona = make_tenant("lc")
    seed_tenant(persona)
    set_modeling(persona, seed=7)
    for _ in range(2):
        assert (
            training.training_run_execute(tenant_id=_tid(persona), run_id=_start(persona, 4.0)) == "succeeded"
        )
    return persona


def _pointer(tid):
    with tenant_context(tid):
        return ActiveModel.objects.values_list("version", "previous_version").get(tenant_id=tid)


def test_versions_list_what_ran_and_rollback_is_activating_the_previous_one(two_versions, api):
    tid = _tid(two_versions)
    listed = api.get("/api/v1/model-versions", **two_versions.auth).json()["versions"]
    assert [(v["version"], v["status"], v["switch"]) for v in listed] == [
        (2, "active", "instant"),
        (1, "previous", "instant"),
    ]
    assert listed[0]["design"] == "factors" and listed[0]["mechanism"].startswith("gaussian popularity")
    assert listed[0]["epsilon_spent"] <= 4.0 and "recall@20_capped" in listed[0]["metrics"]

    response = api.post("/api/v1/model-versions/1/activate", **two_versions.auth)

    assert response.status_code == 200, response.content
    assert _pointer(tid) == (1, 2)
    live = selectors.serving_model(tid)
    assert live is not None and live.version == 1
    assert _audit(tid, "model.activate")[-1].target_id == "1"
    again = api.post("/api/v1/model-versions/1/activate", **two_versions.auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_active"
    assert api.post("/api/v1/model-versions/99/activate", **two_versions.auth).status_code == 404


def test_another_tenant_cannot_see_or_activate_a_version(two_versions, tenant_b, api):
    assert api.get("/api/v1/model-versions", **tenant_b.auth).json()["versions"] == []
    assert api.post("/api/v1/model-versions/1/activate", **tenant_b.auth).status_code == 404
    assert _pointer(_tid(two_versions)) == (2, 1)


def test_a_retired_version_is_rematerialised_by_the_worker_and_then_served(two_versions, api):
    tid = _tid(two_versions)
    assert training.training_run_execute(tenant_id=tid, run_id=_start(two_versions, 4.0)) == "succeeded"
    with tenant_context(tid):
        assert ModelVersion.objects.get(tenant_id=tid, version=1).status == "retired"
        assert not served.version_exists(tenant_id=tid, version=1)
    sent = []
    original = lifecycle._enqueue_activation
    lifecycle._enqueue_activation = lambda *args: sent.append(args)
    try:
        response = api.post("/api/v1/model-versions/1/activate", **two_versions.auth)
    finally:
        lifecycle._enqueue_activation = original

    assert response.status_code == 202 and response.json()["status"] == "materialising"
    assert _pointer(tid) == (3, 2)  # nothing switched before the vectors exist
    [(t, v, actor, restore)] = sent
    assert (
        lifecycle.model_version_materialise_and_activate(tenant_id=t, version=v, actor=actor, restore=restore)
        == "active"
    )
    assert _pointer(tid) == (1, 3)
    with tenant_context(tid):
        assert served.vectors_count(tenant_id=tid, version=1) == 30
        statuses = dict(ModelVersion.objects.filter(tenant_id=tid).values_list("version", "status"))
    assert statuses == {1: "active", 2: "retired", 3: "previous"}
    assert not served.version_exists(tenant_id=tid, version=2)  # out of rollback range: its leaf is dropped
    model = selectors.serving_model(tid)
    assert model is not None and model.version == 1
    probe = np.zeros(model.item_dim, dtype=np.float32)
    probe[0] = 1.0
    hits = selectors.served_knn(tenant_id=tid, version=model.version, vector=probe, k=5)
    assert len(hits) == 5 and all(math.isfinite(h[2]) for h in hits)


def test_activating_a_rejected_version_is_an_audited_override(two_versions, api, settings):
    tid = _tid(two_versions)
    settings.SOTTO = {**settings.SOTTO, "MODELING_GATE_MARGIN": 1000.0}
    assert training.training_run_execute(tenant_id=tid, run_id=_start(two_versions, 4.0)) == "rejected"
    sent = []
    original = lifecycle._enqueue_activation
    lifecycle._enqueue_activation = lambda *args: sent.append(args)
    try:
        assert api.post("/api/v1/model-versions/3/activate", **two_versions.auth).status_code == 202
    finally:
        lifecycle._enqueue_activation = original
    [(t, v, actor, restore)] = sent
    assert restore == "rejected"

    assert (
        lifecycle.model_version_materialise_and_activate(tenant_id=t, version=v, actor=actor, restore=restore)
        == "active"
    )

    event = _audit(tid, "model.activate")[-1]
    assert event.target_id == "3" and event.details["gate_override"] is True
    assert "does not beat DP popularity" in event.details["gate_reason"]


def test_shortening_the_window_never_frees_what_was_charged_before(tenant_a, api, queued, monkeypatch):
    seed_tenant(tenant_a)
    api.patch(BUDGET, {"epsilon_total": 4.0}, format="json", **tenant_a.auth)  # lifetime
    assert (
        api.post("/api/v1/training-runs", {"epsilon": 4.0}, format="json", **tenant_a.auth).status_code == 202
    )
    future = timezone.now() + timedelta(days=40)
    monkeypatch.setattr("apps.modeling.budget.timezone.now", lambda: future)

    # switching the spent lifetime budget to a 7-day window 40 days later must not free its charge
    assert api.patch(BUDGET, {"renewal_days": 7}, format="json", **tenant_a.auth).status_code == 200
    refused = api.post("/api/v1/training-runs", {"epsilon": 1.0}, format="json", **tenant_a.auth)

    assert refused.status_code == 409 and refused.json()["error"]["code"] == "budget_exceeded"
    shown = selectors.privacy_budget(tenant_id=_tid(tenant_a), now=future)
    assert shown["epsilon_remaining"] == 0.0 and shown["next_renewal_at"] is None  # it never comes back
    # a charge made after the change renews with the new window
    assert not selectors.charge_counts(
        future + timedelta(days=1),
        now=future + timedelta(days=9),
        renewal_days=7,
        carry_before=future,
        carry_days=None,
    )
    assert selectors.charge_counts(
        future - timedelta(days=1),
        now=future + timedelta(days=9),
        renewal_days=7,
        carry_before=future,
        carry_days=30,
    )


def test_a_release_below_the_smallest_epsilon_is_refused(tenant_a, api, queued):
    seed_tenant(tenant_a)
    response = api.post("/api/v1/popularity-release", {"epsilon": 1e-9}, format="json", **tenant_a.auth)
    assert response.status_code == 400 and "smallest release" in response.json()["error"]["message"]
    assert _ledger_count(_tid(tenant_a)) == 0


def test_one_tenant_whose_run_cannot_start_does_not_stop_the_others(tenant_a, tenant_b, api, queued):
    from apps.tenancy.services import tenant_update_settings

    for persona in (tenant_a, tenant_b):
        seed_tenant(persona)
        _schedule(persona, api, cadence="weekly", epsilon_per_run=1.0)
    # tenant A's settings make run_config fail with a plain error, not a DomainError
    tenant_update_settings(tenant=tenant_a.tenant, changes={"modeling": {"seed": "x"}}, actor="test")

    lifecycle.retrain_due()

    assert _ledger_count(_tid(tenant_a)) == 0 and _ledger_count(_tid(tenant_b)) == 1
    alert = api.get(SETTINGS, **tenant_a.auth).json()["retraining"]["alert"]
    assert alert is not None and "not started" in alert["message"]


def test_an_activation_whose_worker_never_finishes_is_given_back_by_the_reaper(two_versions, api):
    tid = _tid(two_versions)
    assert training.training_run_execute(tenant_id=tid, run_id=_start(two_versions, 4.0)) == "succeeded"
    original = lifecycle._enqueue_activation
    lifecycle._enqueue_activation = lambda *args: None  # the message is lost
    try:
        assert api.post("/api/v1/model-versions/1/activate", **two_versions.auth).status_code == 202
    finally:
        lifecycle._enqueue_activation = original
    assert lifecycle.activations_reap() == 0  # not before the task's time limit

    given_back = lifecycle.activations_reap(
        now=timezone.now() + lifecycle.ACTIVATION_STALE_AFTER + timedelta(1)
    )

    assert given_back == 1
    with tenant_context(tid):
        assert ModelVersion.objects.get(tenant_id=tid, version=1).status == "retired"
    assert _pointer(tid) == (3, 2)
    assert _audit(tid, "model.activate.failed")[-1].target_id == "1"
    # and it can be asked for again
    lifecycle._enqueue_activation = lambda *args: None
    try:
        assert api.post("/api/v1/model-versions/1/activate", **two_versions.auth).status_code == 202
    finally:
        lifecycle._enqueue_activation = original

"""Retention: events older than the tenant's window are deleted and the affected states rebuilt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import numpy as np

from apps.core.tenant_db import tenant_context
from apps.profiles.models import UserEvent
from apps.profiles.selectors import seen_item_pks, user_state
from apps.profiles.services import events_apply_retention, events_fold_stale_pending, retention_days
from apps.profiles.tasks import apply_retention, apply_retention_tenant
from apps.tenancy.services import tenant_update_settings
from tests.profiles.conftest import event, make_items, state_of

NOW = datetime.now(tz=UTC)


def ingest(api, persona, events):
    response = api.post("/api/v1/events", {"events": events}, format="json", **persona.auth)
    assert response.status_code == 201, response.json()


def test_old_events_go_and_the_state_is_rebuilt_from_what_is_left(api, tenant_a, items_a, audit_log):
    tenant_update_settings(tenant=tenant_a.tenant, changes={"event_retention_days": 30}, actor="test")
    old = (NOW - timedelta(days=40)).isoformat()
    recent = (NOW - timedelta(days=2)).isoformat()
    ingest(
        api,
        tenant_a,
        [
            event("pat", "i1", ts=old),
            event("pat", "i2", ts=old),
            event("pat", "i3", ts=recent),
            event("quin", "i4", ts=old),
        ],
    )
    tenant_id = tenant_a.tenant.id
    assert state_of(tenant_id, "pat")["n_events"] == 3

    result = events_apply_retention(tenant_id=tenant_id)

    assert (result.days, result.deleted, result.users_rebuilt) == (30, 3, 2)
    state = state_of(tenant_id, "pat")
    assert state["n_events"] == 1 and state["last_items"] == [items_a["i3"]]
    assert np.allclose(state["weight_sum"], np.ones(2) * state["weight_sum"][0])
    assert seen_item_pks(tenant_id, "pat") == {items_a["i3"]}
    assert user_state(tenant_id, "quin") is None  # nothing left: cold start
    assert [c["action"] for c in audit_log if c["action"].startswith("events.")] == ["events.retention"]
    assert events_apply_retention(tenant_id=tenant_id).deleted == 0  # idempotent


def test_the_default_retention_applies_without_a_tenant_setting(api, tenant_a, items_a, settings):
    settings.SOTTO = {**settings.SOTTO, "EVENT_RETENTION_DAYS": 5}
    ingest(
        api,
        tenant_a,
        [
            event("ray", "i1", ts=(NOW - timedelta(days=6)).isoformat()),
            event("ray", "i2", ts=(NOW - timedelta(days=4)).isoformat()),
        ],
    )
    assert events_apply_retention(tenant_id=tenant_a.tenant.id).deleted == 1


def test_bad_retention_settings_fall_back_to_the_default(settings):
    settings.SOTTO = {**settings.SOTTO, "EVENT_RETENTION_DAYS": 90}
    assert retention_days({"event_retention_days": 7}) == 7
    for bad in (
        {"event_retention_days": 0},
        {"event_retention_days": "7"},
        {"event_retention_days": True},
        {},
        None,
    ):
        assert retention_days(bad) == 90


def test_retention_only_touches_its_own_tenant(api, tenant_a, tenant_b, items_a):
    make_items(tenant_b.tenant.id, ["i1"])
    old = (NOW - timedelta(days=400)).isoformat()
    ingest(api, tenant_a, [event("sam", "i1", ts=old)])
    ingest(api, tenant_b, [event("sam", "i1", ts=old)])
    tenant_update_settings(tenant=tenant_b.tenant, changes={"event_retention_days": 1000}, actor="test")
    assert events_apply_retention(tenant_id=tenant_a.tenant.id).deleted == 1
    assert events_apply_retention(tenant_id=tenant_b.tenant.id).deleted == 0
    assert state_of(tenant_b.tenant.id, "sam")["n_events"] == 1


def test_the_beat_task_fans_out_one_task_per_tenant_with_ids_only(tenant_a, tenant_b):
    with mock.patch.object(apply_retention_tenant, "apply_async") as queued:
        count = apply_retention.apply().get()
    sent = [call.kwargs["args"] for call in queued.call_args_list]
    assert count == len(sent) >= 2
    assert [tenant_a.tenant.id] in sent and [tenant_b.tenant.id] in sent


def test_the_per_tenant_task_also_folds_pending_events_whose_vectors_landed_unseen(api, tenant_a, items_a):
    tenant_id = tenant_a.tenant.id
    pending = make_items(tenant_id, ["p1"], encode=False)
    ingest(api, tenant_a, [event("tia", "p1")])
    assert user_state(tenant_id, "tia") is None
    # the vector lands without the hook running (as when it races the ingest's commit)
    from tests.profiles.conftest import encode_items

    with mock.patch("apps.catalog.services.run_item_vectors_ready"):
        encode_items(tenant_id, [pending["p1"]])
    assert user_state(tenant_id, "tia") is None
    assert apply_retention_tenant.apply(args=[tenant_id]).get()["pending_folded"] == 1
    assert state_of(tenant_id, "tia")["n_events"] == 1
    assert events_fold_stale_pending(tenant_id=tenant_id) == 0
    with tenant_context(tenant_id):
        assert UserEvent.objects.filter(tenant_id=tenant_id, folded=False).count() == 0


def test_beat_runs_the_retention_task_every_six_hours_on_the_default_queue():
    from django.conf import settings

    from config.celery import app
    from config.schedules import beat_schedule

    app.loader.import_default_modules()
    entry = beat_schedule()["profiles-retention"]
    assert entry["task"] == "sotto.profiles.apply_retention"
    assert entry["schedule"] == 6 * 3600.0
    assert entry["options"]["queue"] == settings.SOTTO["QUEUE_PREFIX"] + "default"

"""audit_append / record(): one sealed, linked event per sensitive action, in the caller's transaction."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.audit.chain import compute_hash, genesis_hash, verify_chain
from apps.audit.models import AuditEvent
from apps.audit.services import audit_append, audit_verify_live, row_to_event
from apps.core import audit
from apps.core.tenant_db import dangerously_as_platform, tenant_context


def _chain(tenant_id):
    with tenant_context(tenant_id):
        return [row_to_event(r) for r in AuditEvent.objects.filter(tenant_id=tenant_id).order_by("sequence")]


def test_tenant_creation_starts_the_chain_on_its_genesis_hash(tenant_a):
    events = _chain(tenant_a.tenant.id)
    first = events[0]
    assert (first["sequence"], first["action"], first["tenant"]) == (1, "tenant.create", tenant_a.slug)
    assert first["prev_hash"] == genesis_hash(tenant_a.slug)
    assert [e["action"] for e in events[:2]] == ["tenant.create", "api_key.create"]


def test_stored_rows_re_verify_from_the_row_alone(tenant_a):
    with tenant_context(tenant_a.tenant.id):
        audit.record(
            tenant_id=tenant_a.tenant.id,
            actor="key:abc",
            action="test.nested",
            target_type="thing",
            target_id="p-1",
            details={
                "n": 2**53 - 1,
                "neg": -3,
                "flag": True,
                "none": None,
                "list": [1, "ü", {"k": "\u2028"}],
                "s": "é\n",
            },
        )
    events = _chain(tenant_a.tenant.id)
    assert verify_chain(events, tenant=tenant_a.slug).ok
    assert all(compute_hash(e) == e["hash"] for e in events)
    assert events[-1]["details"]["list"][2] == {"k": "\u2028"}


def test_record_is_the_one_door_and_lands_in_the_right_chain(tenant_a, tenant_b):
    with tenant_context(tenant_b.tenant.id):
        audit.record(tenant_id=tenant_b.tenant.id, actor="system", action="test.door")
    assert "test.door" not in [e["action"] for e in _chain(tenant_a.tenant.id)]
    assert _chain(tenant_b.tenant.id)[-1]["action"] == "test.door"


def test_it_opens_the_tenant_scope_itself_when_the_caller_did_not(tenant_a):
    audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.unscoped")
    assert _chain(tenant_a.tenant.id)[-1]["action"] == "test.unscoped"


def test_writing_tenant_b_events_inside_tenant_a_scope_is_a_bug_and_refused(tenant_a, tenant_b):
    with pytest.raises(RuntimeError, match="inside tenant"), tenant_context(tenant_a.tenant.id):
        audit_append(tenant_id=tenant_b.tenant.id, actor="system", action="test.cross")


def test_the_record_rolls_back_with_the_action(tenant_a):
    before = len(_chain(tenant_a.tenant.id))
    with pytest.raises(ZeroDivisionError), tenant_context(tenant_a.tenant.id):
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.rolled-back")
        1 / 0  # noqa: B018 - the action fails after its record was written
    assert len(_chain(tenant_a.tenant.id)) == before


def test_a_failed_append_fails_the_callers_transaction(tenant_a):
    # No savepoint of its own: a caller that swallows the error cannot commit its action unrecorded.
    from django.db.transaction import TransactionManagementError

    with pytest.raises(TransactionManagementError), transaction.atomic():
        with contextlib.suppress(ValueError):
            audit_append(tenant_id=987654321, actor="system", action="test.unknown-tenant")
        with dangerously_as_platform():
            AuditEvent.objects.count()


@pytest.mark.parametrize(
    "details",
    [
        {"password": "hunter2"},
        {"nested": {"new_Password": "x"}},
        {"list": [{"client_secret": "x"}]},
        {"ratio": 0.5},
        {"text": "nul\x00byte"},
    ],
)
def test_credentials_floats_and_nul_never_reach_the_log(tenant_a, details):
    before = len(_chain(tenant_a.tenant.id))
    with pytest.raises(ValueError):
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.bad", details=details)
    assert len(_chain(tenant_a.tenant.id)) == before


def test_platform_events_form_their_own_chain(live_db):
    audit_append(tenant_id=None, actor="system", action="test.platform-chain")
    with dangerously_as_platform():
        rows = list(AuditEvent.objects.filter(tenant__isnull=True).order_by("sequence"))
    assert rows[0].prev_hash == genesis_hash(None)
    assert rows[-1].action == "test.platform-chain" and rows[-1].tenant_slug is None
    assert audit_verify_live(None).ok


def test_times_never_go_backwards_along_a_chain(tenant_a, monkeypatch):
    head = _chain(tenant_a.tenant.id)[-1]
    earlier = timezone.now() - timedelta(hours=1)
    monkeypatch.setattr("apps.audit.services.timezone.now", lambda: earlier)
    audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.skewed-clock")
    assert _chain(tenant_a.tenant.id)[-1]["time"] == head["time"]

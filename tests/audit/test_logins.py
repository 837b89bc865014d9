"""Admin sign-ins reach the audit chains: each member tenant's chain and the platform chain,
exactly once each; passwords (and whatever was typed for an unknown account) never do."""

from __future__ import annotations

import json

from django.test import Client

from apps.audit.models import AuditEvent
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from tests.support import make_user, unique_slug

PASSWORD = "correct-horse-battery-9"


def _platform_events(since_id: int) -> list[AuditEvent]:
    with dangerously_as_platform():
        return list(AuditEvent.objects.filter(tenant__isnull=True, id__gt=since_id).order_by("sequence"))


def _platform_high_water() -> int:
    with dangerously_as_platform():
        last = (
            AuditEvent.objects.filter(tenant__isnull=True)
            .order_by("-id")
            .values_list("id", flat=True)
            .first()
        )
    return last or 0


def test_a_sign_in_is_recorded_once_per_member_tenant_and_once_for_the_platform(tenant_a, tenant_b, live_db):
    from apps.tenancy.services import membership_set

    user = make_user(tenant_a.tenant, "reviewer")
    membership_set(tenant=tenant_b.tenant, user=user, role="admin", actor="test")
    mark = _platform_high_water()

    assert Client().login(username=user.username, password=PASSWORD)

    for persona in (tenant_a, tenant_b):
        with tenant_context(persona.tenant.id):
            logins = list(AuditEvent.objects.filter(tenant_id=persona.tenant.id, action="auth.login"))
        assert [(e.actor, e.target_type, e.target_id) for e in logins] == [
            (f"user:{user.username}", "user", str(user.pk))
        ]
    platform = [
        e for e in _platform_events(mark) if e.action == "auth.login" and e.actor == f"user:{user.username}"
    ]
    assert len(platform) == 1
    assert PASSWORD not in json.dumps([e.details for e in platform])


def test_a_failed_sign_in_is_recorded_without_the_password(tenant_a, live_db):
    user = make_user(tenant_a.tenant, "admin")
    mark = _platform_high_water()

    assert not Client().login(username=user.username, password="wrong-" + PASSWORD)

    failed = [e for e in _platform_events(mark) if e.action == "auth.login_failed"]
    assert len(failed) == 1
    assert PASSWORD not in json.dumps(
        {"d": failed[0].details, "t": failed[0].target_id, "a": failed[0].actor}
    )
    with tenant_context(tenant_a.tenant.id):
        assert not AuditEvent.objects.filter(tenant_id=tenant_a.tenant.id, action="auth.login").exists()


def test_what_was_typed_for_an_unknown_account_is_not_kept(live_db):
    from django.apps import apps

    typed = "my-password-typed-in-the-wrong-box-" + unique_slug()
    mark = _platform_high_water()

    assert not Client().login(username=typed, password="x")

    failed = [e for e in _platform_events(mark) if e.action == "auth.login_failed"]
    assert len(failed) == 1
    if not apps.is_installed("apps.webadmin"):  # the web admin's throttle writes its own record
        assert typed not in json.dumps(
            {"d": failed[0].details, "t": failed[0].target_id, "a": failed[0].actor}
        )

"""API keys from the admin (shown once, usable, revocable) and the operator console."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.core.services import worker_heartbeat_record
from apps.core.tenant_db import tenant_context
from apps.tenancy.selectors import api_keys_for_tenant, memberships_for_user, tenant_get
from tests.support import unique_slug, wait_for

PASSWORD = "correct-horse-battery-9"


def test_a_new_key_is_shown_once_works_at_once_and_dies_when_revoked(signed_in, admin_a, tenant_a, api):
    client = signed_in(admin_a)
    # when the admin creates a key
    created = client.post(f"/t/{tenant_a.slug}/keys/", {"name": "mobile app", "scopes": ["serve", "ingest"]})
    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    raw = created.context["issued"].raw
    assert raw.encode() in created.content
    # then it authenticates against the API as this tenant, with exactly the chosen scopes
    whoami = api.get("/api/v1/tenant", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert whoami.status_code == 200 and whoami.json()["tenant"] == tenant_a.slug
    with tenant_context(tenant_a.tenant.id):
        key = api_keys_for_tenant(tenant_id=tenant_a.tenant.id).get(name="mobile app")
    assert sorted(key.scopes) == ["ingest", "serve"] and key.created_by == f"user:{admin_a.username}"
    # and the key list never shows the secret again
    listing = client.get(f"/t/{tenant_a.slug}/keys/")
    assert raw.encode() not in listing.content and key.prefix.encode() in listing.content
    # when it is revoked, the API refuses it at once
    revoked = client.post(f"/t/{tenant_a.slug}/keys/{key.pk}/revoke/", follow=True)
    assert b"is revoked" in revoked.content
    assert api.get("/api/v1/tenant", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 401


def test_a_key_needs_a_name_and_a_scope(signed_in, admin_a, tenant_a):
    client = signed_in(admin_a)
    before = _keys(tenant_a)
    response = client.post(f"/t/{tenant_a.slug}/keys/", {"name": "", "scopes": []})
    assert response.status_code == 200 and response.context["issued"] is None
    assert response.context["form"].errors.keys() == {"name", "scopes"}
    assert _keys(tenant_a) == before


def test_key_creation_and_revocation_are_audited_under_the_admins_name(signed_in, admin_a, tenant_a):
    from apps.audit.selectors import audit_events

    client = signed_in(admin_a)
    raw = client.post(f"/t/{tenant_a.slug}/keys/", {"name": "audited", "scopes": ["serve"]}).context["issued"]
    client.post(f"/t/{tenant_a.slug}/keys/{raw.key.pk}/revoke/")
    with tenant_context(tenant_a.tenant.id):
        rows = list(audit_events(tenant_a.tenant.id, target_id=raw.key.prefix).values_list("action", "actor"))
    assert sorted(rows) == [
        ("api_key.create", f"user:{admin_a.username}"),
        ("api_key.revoke", f"user:{admin_a.username}"),
    ]


def test_the_operator_creates_a_tenant_and_gives_it_an_owner_who_can_sign_in(signed_in, operator):
    client = signed_in(operator)
    slug = unique_slug("shop")
    response = client.post("/platform/", {"slug": slug, "name": "Shop"})
    assert response.status_code == 302
    tenant = tenant_get(slug=slug)
    assert tenant is not None and tenant.name == "Shop"
    # a duplicate slug is a form error, not a crash
    assert b"already exists" in client.post("/platform/", {"slug": slug, "name": "again"}).content
    # a weak password for a new account is refused by Django's validators
    username = unique_slug("owner")
    weak = client.post(
        "/platform/memberships/",
        {"tenant": slug, "username": username, "role": "owner", "password": "password"},
    )
    assert weak.status_code == 200 and b"too common" in weak.content
    assert not get_user_model().objects.filter(username=username).exists()
    # with a good one the account is created as the tenant's owner
    ok = client.post(
        "/platform/memberships/",
        {"tenant": slug, "username": username, "role": "owner", "password": PASSWORD},
    )
    assert ok.status_code == 302
    owner = get_user_model().objects.get(username=username)
    assert [(m.tenant.slug, m.role) for m in memberships_for_user(user=owner)] == [(slug, "owner")]
    fresh = Client()
    fresh.post("/login/", {"username": username, "password": PASSWORD})
    assert fresh.get("/")["Location"] == f"/t/{slug}/"
    # and the operator can remove the membership again
    client.post(f"/platform/memberships/{slug}/{owner.pk}/delete/")
    assert memberships_for_user(user=owner) == []


def test_an_unknown_user_without_a_password_is_not_created(signed_in, operator, tenant_a):
    client = signed_in(operator)
    username = unique_slug("ghost")
    response = client.post(
        "/platform/memberships/", {"tenant": tenant_a.slug, "username": username, "role": "admin"}
    )
    assert b"give a password" in response.content
    assert not get_user_model().objects.filter(username=username).exists()


def test_the_health_page_shows_database_broker_and_heartbeats(signed_in, operator):
    beat = worker_heartbeat_record(queue=f"{unique_slug('q')}", token="t")
    response = signed_in(operator).get("/platform/health/")
    assert response.status_code == 200
    assert response.context["checks"] == {"database": "ok", "broker": "ok"}
    assert beat.queue.encode() in response.content and b"alive" in response.content


@pytest.mark.worker
def test_pinging_workers_refreshes_their_heartbeats(signed_in, operator, celery_worker_proc):
    from django.conf import settings

    from apps.core.models import WorkerHeartbeat

    queue = f"{settings.SOTTO['QUEUE_PREFIX']}default"
    WorkerHeartbeat.objects.filter(queue=queue).delete()
    response = signed_in(operator).post("/platform/health/ping/")
    assert response.status_code == 302
    wait_for(
        lambda: WorkerHeartbeat.objects.filter(queue=queue).exists(),
        timeout=60,
        message="the worker never answered the ping",
    )


def _keys(persona) -> int:
    with tenant_context(persona.tenant.id):
        return api_keys_for_tenant(tenant_id=persona.tenant.id).count()

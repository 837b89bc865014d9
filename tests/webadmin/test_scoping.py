"""Server-side scoping: every tenant page, swept across tenants and roles with Django's test client.

Another tenant's slug, or another tenant's object id under one's own slug, answers 404 exactly
like something that does not exist; one's own tenant with too small a role answers 403.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from apps.core.tenant_db import tenant_context
from apps.tenancy.models import ApiKey
from apps.tenancy.selectors import api_keys_for_tenant
from apps.webadmin.sections import SECTIONS


def _webadmin_patterns() -> list[tuple[str, URLPattern]]:
    """Every route of the web admin, with its full name, read from the live URLconf."""
    found: list[tuple[str, URLPattern]] = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and getattr(entry, "namespace", None) == "webadmin":
            found += [(f"webadmin:{p.name}", p) for p in entry.url_patterns if isinstance(p, URLPattern)]
    return found


def _tenant_patterns() -> list[tuple[str, URLPattern]]:
    return [(name, p) for name, p in _webadmin_patterns() if str(p.pattern).startswith("t/<slug:slug>/")]


def _url(pattern: URLPattern, slug: str, ids: dict[str, Any]) -> str:
    route = str(pattern.pattern).replace("<slug:slug>", slug)
    for converter, value in ids.items():
        route = route.replace(converter, str(value))
    assert "<" not in route, f"add a value for the converter in {route!r} to the sweep"
    return "/" + route


def _ids_of(persona: Any) -> dict[str, Any]:
    """Real object ids that belong to ``persona``'s tenant, one per URL converter."""
    with tenant_context(persona.tenant.id):
        key = api_keys_for_tenant(tenant_id=persona.tenant.id).first()
    assert key is not None
    return {
        "<int:key_id>": key.pk,
        "<int:run_id>": 1,
        "<int:version>": 1,
        "<str:endpoint_class>": "recommend",
        "<str:pseudonym>": "p" * 16,
    }


def test_every_tenant_route_is_guarded_by_tenant_page():
    routes = _tenant_patterns()
    assert len(routes) >= 3
    unguarded = [name for name, p in routes if getattr(p.callback, "webadmin_section", None) is None]
    assert unguarded == [], f"tenant routes not wrapped in scoping.tenant_page: {unguarded}"


@pytest.mark.parametrize("method", ["get", "post"])
def test_every_tenant_url_with_another_tenants_slug_answers_404(
    signed_in, admin_a, tenant_a, tenant_b, method
):
    # Given tenant A's admin, when they call each tenant route with B's slug (and B's real object ids)
    client = signed_in(admin_a)
    ids = _ids_of(tenant_b)
    for name, pattern in _tenant_patterns():
        url = _url(pattern, tenant_b.slug, ids)
        response = getattr(client, method)(url)
        # then each answers 404, the same as a tenant that does not exist
        assert response.status_code == 404, f"{name} {method.upper()} {url} -> {response.status_code}"
        missing = getattr(client, method)(_url(pattern, "no-such-tenant", ids))
        assert missing.status_code == 404


def test_another_tenants_object_id_under_my_own_slug_answers_404(signed_in, admin_a, tenant_a, tenant_b):
    # Given A's admin, when they put B's object ids into A's own URLs (every method)
    client = signed_in(admin_a)
    ids = _ids_of(tenant_b)
    their_key = ids["<int:key_id>"]
    swept = 0
    for name, pattern in _tenant_patterns():
        if "<int:key_id>" not in str(pattern.pattern):
            continue
        for method in ("get", "post"):
            response = getattr(client, method)(_url(pattern, tenant_a.slug, ids))
            assert response.status_code == 404, f"{name} {method} -> {response.status_code}"
            swept += 1
    assert swept >= 2
    # then nothing of B's changed
    with tenant_context(tenant_b.tenant.id):
        assert ApiKey.objects.get(pk=their_key).revoked_at is None


def test_my_own_tenant_pages_open_for_me(signed_in, admin_a, tenant_a):
    # Given A's admin, every section an admin may use opens, and every other route without an
    # object id is either a page (200) or POST-only (405), never 404 or 500.
    client = signed_in(admin_a)
    opened = []
    for name, pattern in _tenant_patterns():
        section = pattern.callback.webadmin_section  # type: ignore[attr-defined]
        if "<" in str(pattern.pattern).replace("<slug:slug>", "") or "admin" not in section.roles:
            continue
        response = client.get(_url(pattern, tenant_a.slug, {}))
        assert response.status_code in (200, 405), f"{name}: {response.status_code}"
        if name == section.url_name:
            assert response.status_code == 200, name
            opened.append(section.key)
    assert {"dashboard", "keys"} <= set(opened)


def test_a_reviewer_gets_403_on_admin_pages_of_their_own_tenant(signed_in, reviewer_a, tenant_a):
    client = signed_in(reviewer_a)
    admin_only = [s for s in SECTIONS.values() if "reviewer" not in s.roles]
    assert any(s.key == "keys" for s in admin_only)
    for section in admin_only:
        response = client.get(reverse(section.url_name, kwargs={"slug": tenant_a.slug}))
        assert response.status_code == 403, section.key
    # and an attempt to create a key changes nothing
    before = _key_count(tenant_a)
    assert (
        client.post(f"/t/{tenant_a.slug}/keys/", {"name": "sneaky", "scopes": ["serve"]}).status_code == 403
    )
    assert _key_count(tenant_a) == before


def test_the_reviewer_sees_the_dashboard_but_no_admin_links(signed_in, reviewer_a, tenant_a):
    response = signed_in(reviewer_a).get(f"/t/{tenant_a.slug}/")
    assert response.status_code == 200
    assert b'data-section="keys"' not in response.content
    assert b'data-section="dashboard"' in response.content


def test_anonymous_visitors_are_sent_to_sign_in_without_learning_anything(client, tenant_a, live_db):
    for slug in (tenant_a.slug, "no-such-tenant"):
        response = client.get(f"/t/{slug}/keys/")
        assert response.status_code == 302
        assert response["Location"].startswith("/login/?next=")


def test_platform_pages_do_not_exist_for_tenant_admins(signed_in, admin_a, tenant_a):
    client = signed_in(admin_a)
    for name, pattern in _webadmin_patterns():
        if not str(pattern.pattern).startswith("platform/"):
            continue
        url = _url(pattern, tenant_a.slug, {"<int:user_id>": admin_a.pk})
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            assert response.status_code == 404, f"{name} {method} -> {response.status_code}"


def _key_count(persona: Any) -> int:
    with tenant_context(persona.tenant.id):
        return api_keys_for_tenant(tenant_id=persona.tenant.id).count()

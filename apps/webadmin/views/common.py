"""Rendering shared by the tenant pages: sidebar, tenant switcher, role."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core.audit import user_actor
from apps.webadmin.scoping import TenantAccess
from apps.webadmin.sections import nav_for


def actor_of(request: HttpRequest) -> str:
    """How the audit chain names the signed-in person."""
    return user_actor(request.user.get_username())


def tenant_render(
    request: HttpRequest,
    access: TenantAccess,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    section: str,
    status: int = 200,
    no_store: bool = False,
) -> HttpResponse:
    from apps.tenancy.selectors import tenants_for_user

    base = {
        "access": access,
        "tenant": access.tenant,
        "nav": nav_for(slug=access.tenant.slug, role=access.role, current=section),
        "section": section,
        "switch_tenants": [t for t in tenants_for_user(user=request.user) if t.pk != access.tenant.pk]  # type: ignore[arg-type]
        if not access.is_operator
        else [],
    }
    response = render(request, template, {**base, **(context or {})}, status=status)
    if no_store:
        # Secrets (a new API key, decrypted attributes) must not stay in any cache or history.
        response["Cache-Control"] = "no-store"
    return response

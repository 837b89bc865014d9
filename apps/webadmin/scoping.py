"""Who may see which tenant page: every tenant view goes through ``tenant_page``.

A tenant the signed-in user has no membership in answers 404, exactly like a slug that does not
exist; a tenant they belong to with too small a role answers 403. The view body runs inside
``tenant_context(tenant.id)``, so row-level security scopes every query it makes, and an object
id from another tenant is simply not found (404).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Concatenate, ParamSpec

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ObjectDoesNotExist
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import render

from apps.core.errors import NotFound
from apps.core.tenant_db import tenant_context
from apps.tenancy.models import Role, Tenant
from apps.tenancy.selectors import memberships_for_user, tenant_get
from apps.webadmin.sections import SECTIONS

P = ParamSpec("P")


@dataclass(frozen=True)
class TenantAccess:
    tenant: Tenant
    role: str
    is_operator: bool


def access_for(user: AbstractBaseUser | AnonymousUser, slug: str) -> TenantAccess | None:
    """The user's access to tenant ``slug``, or None when they have none (or it does not exist)."""
    if not user.is_authenticated:
        return None
    if getattr(user, "is_superuser", False):
        tenant = tenant_get(slug=slug)
        return TenantAccess(tenant=tenant, role=Role.OWNER.value, is_operator=True) if tenant else None
    assert isinstance(user, AbstractBaseUser)
    for membership in memberships_for_user(user=user):
        if membership.tenant.slug == slug:
            return TenantAccess(tenant=membership.tenant, role=membership.role, is_operator=False)
    return None


def not_found(request: HttpRequest, access: TenantAccess | None = None) -> HttpResponse:
    """The admin's 404: inside the tenant's layout for one of its members (``access``), else the
    bare card that says the same for a slug that does not exist and one the user may not see."""
    if access is None:
        return render(request, "webadmin/404.html", status=404)
    from apps.webadmin.views.common import tenant_render

    with tenant_context(access.tenant.id):
        return tenant_render(request, access, "webadmin/tenant/404.html", section="", status=404)


def forbidden(request: HttpRequest, access: TenantAccess, needed: frozenset[str]) -> HttpResponse:
    return render(
        request,
        "webadmin/403.html",
        {"access": access, "tenant": access.tenant, "needed": sorted(needed)},
        status=403,
    )


TenantView = Callable[Concatenate[HttpRequest, TenantAccess, P], HttpResponseBase]


def tenant_page(section: str) -> Callable[[TenantView[P]], Callable[..., HttpResponseBase]]:
    """Guard a view taking ``(request, access, **url_kwargs)`` under ``/t/<slug>/``.

    The section (``sections.SECTIONS``) says which roles may open it.
    """
    spec = SECTIONS[section]

    def decorate(view: TenantView[P]) -> Callable[..., HttpResponseBase]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, slug: str, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            access = access_for(request.user, slug)
            if access is None:
                return not_found(request)
            if access.role not in spec.roles:
                return forbidden(request, access, spec.roles)
            try:
                with tenant_context(access.tenant.id):
                    return view(request, access, *args, **kwargs)
            except (Http404, ObjectDoesNotExist, NotFound):
                return not_found(request, access)

        wrapper.webadmin_section = spec  # type: ignore[attr-defined]  # read by the scoping sweep tests
        return wrapper

    return decorate


def operator_page(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Platform pages: superusers only; everyone else gets 404 (the page does not exist for them)."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not getattr(request.user, "is_superuser", False):
            return not_found(request)
        return view(request, *args, **kwargs)

    return wrapper

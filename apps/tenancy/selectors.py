"""Reads for tenants and their access; callers get only what the signed-in user may see."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from apps.core.tenant_db import dangerously_as_platform, user_memberships
from apps.tenancy.models import ApiKey, Membership, Tenant


def tenant_get(*, slug: str) -> Tenant | None:
    return Tenant.objects.filter(slug=slug).first()


def memberships_for_user(*, user: AbstractBaseUser) -> list[Membership]:
    """The user's own memberships; a superuser sees them too (operator actions use the platform path)."""
    with user_memberships(int(user.pk)):
        return list(Membership.objects.filter(user_id=user.pk).select_related("tenant"))


def tenants_for_user(*, user: AbstractBaseUser) -> list[Tenant]:
    if getattr(user, "is_superuser", False):
        return list(Tenant.objects.all())
    return [m.tenant for m in memberships_for_user(user=user)]


def role_for(*, user: AbstractBaseUser, tenant: Tenant) -> str | None:
    if getattr(user, "is_superuser", False):
        return "owner"
    for membership in memberships_for_user(user=user):
        if membership.tenant_id == tenant.id:
            return membership.role
    return None


def api_keys_for_tenant(*, tenant_id: int) -> QuerySet[ApiKey]:
    """Call inside ``tenant_context(tenant_id)``; RLS guarantees nothing else leaks in."""
    return ApiKey.objects.filter(tenant_id=tenant_id)


def all_memberships() -> list[Membership]:
    """Platform operators only."""
    with dangerously_as_platform():
        return list(Membership.objects.select_related("tenant", "user"))

"""State changes for tenants, memberships and API keys; each writes its audit record in-transaction."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.tenant_db import tenant_context
from apps.tenancy import keys
from apps.tenancy.models import ALL_SCOPES, ApiKey, Membership, Role, Tenant

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class TenancyError(ValueError):
    """A request the caller can fix (bad slug, duplicate, unknown scope)."""


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    raw: str


def tenant_create(
    *, slug: str, name: str = "", actor: str = SystemActor.SYSTEM, settings: dict[str, Any] | None = None
) -> Tenant:
    if not _SLUG_RE.match(slug):
        raise TenancyError(
            "slug must be 1-63 lowercase letters, digits or hyphens, not starting or ending with '-'"
        )
    with transaction.atomic():
        if Tenant.objects.filter(slug=slug).exists():
            raise TenancyError(f"tenant {slug!r} already exists")
        tenant = Tenant.objects.create(slug=slug, name=name or slug, settings=settings or {})
        with tenant_context(tenant.id):
            _on_tenant_created(tenant)
            audit.record(
                tenant_id=tenant.id,
                actor=actor,
                action=AuditAction.TENANT_CREATE,
                target_type="tenant",
                target_id=slug,
            )
    return tenant


def _on_tenant_created(tenant: Tenant) -> None:
    """Per-tenant storage (vector partitions, keys) is created by the owning apps' hooks."""
    from apps.core.hooks import run_tenant_created

    run_tenant_created(tenant.id)


def tenant_update_settings(*, tenant: Tenant, changes: dict[str, Any], actor: str) -> Tenant:
    with tenant_context(tenant.id):
        locked = Tenant.objects.select_for_update().get(pk=tenant.pk)
        before = dict(locked.settings)
        locked.settings = {**before, **changes}
        locked.save(update_fields=["settings"])
        audit.record(
            tenant_id=tenant.id,
            actor=actor,
            action=AuditAction.TENANT_SETTINGS_UPDATE,
            target_type="tenant",
            target_id=tenant.slug,
            details={"changed": sorted(changes)},
        )
    return locked


def api_key_create(
    *, tenant: Tenant, name: str, scopes: list[str] | None = None, actor: str = SystemActor.SYSTEM
) -> IssuedKey:
    scopes = list(scopes or ALL_SCOPES)
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown or not scopes:
        raise TenancyError(f"unknown scopes {unknown}; allowed: {ALL_SCOPES}")
    if not name.strip():
        raise TenancyError("an API key needs a name")
    raw, prefix = keys.generate()
    with tenant_context(tenant.id):
        key = ApiKey.objects.create(
            tenant=tenant,
            name=name.strip()[:100],
            prefix=prefix,
            key_hash=keys.digest(raw),
            scopes=sorted(set(scopes)),
            created_by=actor[:150],
        )
        audit.record(
            tenant_id=tenant.id,
            actor=actor,
            action=AuditAction.API_KEY_CREATE,
            target_type="api_key",
            target_id=prefix,
            details={"scopes": key.scopes, "name": key.name},
        )
    return IssuedKey(key=key, raw=raw)


def api_key_revoke(*, tenant: Tenant, key_id: int, actor: str) -> ApiKey:
    with tenant_context(tenant.id):
        key = ApiKey.objects.select_for_update().get(tenant=tenant, pk=key_id)
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            key.save(update_fields=["revoked_at"])
            audit.record(
                tenant_id=tenant.id,
                actor=actor,
                action=AuditAction.API_KEY_REVOKE,
                target_type="api_key",
                target_id=key.prefix,
            )
    from apps.tenancy.authn import forget_cached_key

    forget_cached_key(key.prefix)
    return key


def membership_set(*, tenant: Tenant, user: AbstractBaseUser, role: str, actor: str) -> Membership:
    if role not in Role.values:
        raise TenancyError(f"role must be one of {Role.values}")
    with tenant_context(tenant.id):
        membership, created = Membership.objects.update_or_create(
            tenant=tenant, user_id=user.pk, defaults={"role": role}
        )
        audit.record(
            tenant_id=tenant.id,
            actor=actor,
            action=AuditAction.MEMBERSHIP_CREATE if created else AuditAction.MEMBERSHIP_UPDATE,
            target_type="user",
            target_id=str(user.pk),
            details={"role": role},
        )
    return membership


def membership_remove(*, tenant: Tenant, user_id: int, actor: str) -> None:
    with tenant_context(tenant.id):
        deleted, _ = Membership.objects.filter(tenant=tenant, user_id=user_id).delete()
        if deleted:
            audit.record(
                tenant_id=tenant.id,
                actor=actor,
                action=AuditAction.MEMBERSHIP_DELETE,
                target_type="user",
                target_id=str(user_id),
            )

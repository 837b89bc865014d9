"""Shared bits of the catalogue commands (tenant lookup by slug)."""

from __future__ import annotations

from django.core.management.base import CommandError

from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_get


def tenant_by_slug(slug: str) -> Tenant:
    tenant = tenant_get(slug=slug)
    if tenant is None:
        raise CommandError(f"no tenant {slug!r} (create it with `manage.py create_tenant {slug}`)")
    return tenant

"""Migration operation that puts a tenant-owned table under forced row-level security."""

from __future__ import annotations

from typing import Any

from django.db import migrations

from apps.core.tenant_db import PLATFORM_GUC, TENANT_GUC

TENANT_EXPR = f"NULLIF(current_setting('{TENANT_GUC}', true), '')::bigint"
PLATFORM_EXPR = f"current_setting('{PLATFORM_GUC}', true) = 'on'"


def rls_sql(table: str, *, extra_using: str | None = None) -> tuple[str, str]:
    """SQL to enable/disable RLS on ``table``; ``extra_using`` widens reads only (never writes)."""
    using = f"tenant_id = {TENANT_EXPR} OR {PLATFORM_EXPR}"
    if extra_using:
        using = f"{using} OR ({extra_using})"
    check = f"tenant_id = {TENANT_EXPR} OR {PLATFORM_EXPR}"
    forward = f"""
        ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
        ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
        DROP POLICY IF EXISTS tenant_isolation ON {table};
        CREATE POLICY tenant_isolation ON {table} USING ({using}) WITH CHECK ({check});
    """
    backward = f"""
        DROP POLICY IF EXISTS tenant_isolation ON {table};
        ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
        ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
    """
    return forward, backward


def EnableTenantRLS(table: str, *, extra_using: str | None = None) -> Any:  # noqa: N802 - reads as an operation
    forward, backward = rls_sql(table, extra_using=extra_using)
    return migrations.RunSQL(forward, backward)

"""Per-tenant vector partitions: created with the tenant, dropped with it (see migration 0001).

The DDL runs in a SECURITY DEFINER function owned by the owner role, so the runtime role never
needs DDL rights; dropping is a trigger on ``tenancy_tenant``, so it happens however the tenant
row goes.
"""

from __future__ import annotations

from django.db import connection

from apps.core.hooks import on_tenant_created

PARENT_TABLE = "catalog_itemvector"


def partition_name(tenant_id: int) -> str:
    return f"{PARENT_TABLE}_t{int(tenant_id)}"


@on_tenant_created
def vector_partition_create(tenant_id: int) -> None:
    """Create the tenant's partition and its HNSW index (idempotent); joins the caller's transaction."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT catalog_itemvector_partition_create(%s)", [int(tenant_id)])


def vector_partition_exists(tenant_id: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [partition_name(tenant_id)])
        row = cursor.fetchone()
    return bool(row and row[0])


def vector_partition_analyze(tenant_id: int) -> None:
    """Refresh the planner's statistics for the tenant's partition (after a bulk load)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT catalog_itemvector_partition_analyze(%s)", [int(tenant_id)])

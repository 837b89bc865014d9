"""Per-tenant vector partitions: created with the tenant, indexed, under forced RLS, dropped with it."""

import pytest
from django.db import ProgrammingError, connection, transaction

from apps.catalog.partitions import partition_name
from apps.tenancy.models import Tenant


def _relation(name):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relrowsecurity, c.relforcerowsecurity, c.relispartition FROM pg_class c WHERE c.relname = %s",
            [name],
        )
        return cursor.fetchone()


def _indexes(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return [row[0] for row in cursor.fetchall()]


def _policies(table):
    with connection.cursor() as cursor:
        cursor.execute("SELECT qual, with_check FROM pg_policies WHERE tablename = %s", [table])
        return cursor.fetchall()


def test_a_new_tenant_gets_its_own_partition_with_an_hnsw_index_and_forced_rls(tenant_a):
    part = partition_name(tenant_a.tenant.id)
    assert _relation(part) == (True, True, True)
    assert _relation("catalog_itemvector")[:2] == (True, True)
    hnsw = [d for d in _indexes(part) if "hnsw" in d]
    assert len(hnsw) == 1
    assert "vector_cosine_ops" in hnsw[0] and "m='16'" in hnsw[0].replace(" ", "")
    # the same policy on the parent and on the partition
    assert _policies(part) == _policies("catalog_itemvector") != []


def test_deleting_a_tenant_drops_its_partition(live_db):
    # A bare tenant (no keys, no audit rows) so its row can be deleted outright.
    from apps.catalog.partitions import vector_partition_create

    with transaction.atomic():
        tenant = Tenant.objects.create(slug="doomed-partition-test", name="doomed")
        vector_partition_create(tenant.id)
    part = partition_name(tenant.id)
    assert _relation(part) is not None
    Tenant.objects.filter(pk=tenant.pk).delete()
    assert _relation(part) is None


def test_the_runtime_role_cannot_run_ddl_on_vector_tables(tenant_a):
    part = partition_name(tenant_a.tenant.id)
    for sql in (
        f"DROP TABLE {part}",
        f"ALTER TABLE {part} DISABLE ROW LEVEL SECURITY",
        "CREATE TABLE catalog_itemvector_t999999 PARTITION OF catalog_itemvector FOR VALUES IN (999999)",
    ):
        with pytest.raises(ProgrammingError), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql)


def test_partitions_cannot_be_made_for_tenants_that_do_not_exist(live_db):
    with pytest.raises(Exception, match="no tenant"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT catalog_itemvector_partition_create(987654321)")

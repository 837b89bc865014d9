"""Row-level security: the database itself keeps tenants apart, even from a forgetful query."""

from django.db import connection, transaction

from apps.core.tenant_db import tenant_context
from apps.tenancy.models import ApiKey


def _tables_with_tenant_id() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name FROM information_schema.columns c
            JOIN information_schema.tables t USING (table_schema, table_name)
            WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND t.table_type = 'BASE TABLE'
            """
        )
        return sorted(row[0] for row in cursor.fetchall())


def test_every_table_with_a_tenant_id_has_rls_enabled_and_forced(live_db):
    tables = _tables_with_tenant_id()
    assert "tenancy_apikey" in tables and "tenancy_membership" in tables
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = ANY(%s)",
            [tables],
        )
        flags = {name: (enabled, forced) for name, enabled, forced in cursor.fetchall()}
        cursor.execute("SELECT DISTINCT tablename FROM pg_policies WHERE schemaname = 'public'")
        with_policy = {row[0] for row in cursor.fetchall()}
    missing = [t for t in tables if flags.get(t) != (True, True) or t not in with_policy]
    assert missing == [], f"tables without forced RLS and a policy: {missing}"


def test_a_query_that_forgets_its_tenant_filter_still_sees_only_its_tenant(tenant_a, tenant_b):
    with tenant_context(tenant_a.tenant.id):
        seen = set(ApiKey.objects.values_list("tenant_id", flat=True))  # no tenant filter on purpose
    assert seen == {tenant_a.tenant.id}
    with tenant_context(tenant_b.tenant.id):
        seen_b = set(ApiKey.objects.values_list("tenant_id", flat=True))
    assert seen_b == {tenant_b.tenant.id}


def test_no_tenant_set_means_no_rows(tenant_a):
    with transaction.atomic():
        assert ApiKey.objects.count() == 0


def test_writing_a_row_for_another_tenant_is_refused_by_the_database(tenant_a, tenant_b):
    import pytest
    from django.db import ProgrammingError

    with pytest.raises(ProgrammingError, match="row-level security"), tenant_context(tenant_a.tenant.id):
        ApiKey.objects.create(
            tenant=tenant_b.tenant, name="x", prefix="zzzzzzzzzz", key_hash="0" * 64, scopes=["serve"]
        )


def test_tenant_setting_is_transaction_local_and_never_leaks_to_the_next_transaction(tenant_a):
    with tenant_context(tenant_a.tenant.id):
        assert ApiKey.objects.count() == 1
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT NULLIF(current_setting('app.tenant_id', true), '')")
        assert cursor.fetchone()[0] is None
        assert ApiKey.objects.count() == 0

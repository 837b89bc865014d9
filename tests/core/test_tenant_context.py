"""tenant_context: correct scoping in every nesting, and no wasted round trips."""

from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from apps.core.tenant_db import activate_tenant, current_tenant_id, tenant_context
from apps.tenancy.models import ApiKey


def _guc_queries(ctx):
    return [q["sql"] for q in ctx.captured_queries if "app.tenant_id" in q["sql"]]


def test_a_new_transaction_costs_one_set_config(tenant_a):
    with CaptureQueriesContext(connection) as ctx, tenant_context(tenant_a.tenant.id):
        assert ApiKey.objects.count() == 1
    assert len(_guc_queries(ctx)) == 1


def test_nesting_the_same_tenant_costs_no_round_trip(tenant_a):
    with tenant_context(tenant_a.tenant.id):
        with CaptureQueriesContext(connection) as ctx, tenant_context(tenant_a.tenant.id):
            assert ApiKey.objects.count() == 1
        assert _guc_queries(ctx) == []


def test_nesting_another_tenant_switches_and_restores(tenant_a, tenant_b):
    with tenant_context(tenant_a.tenant.id):
        with tenant_context(tenant_b.tenant.id):
            assert set(ApiKey.objects.values_list("tenant_id", flat=True)) == {tenant_b.tenant.id}
        assert current_tenant_id() == tenant_a.tenant.id
        assert set(ApiKey.objects.values_list("tenant_id", flat=True)) == {tenant_a.tenant.id}
        # and back to B again: the stale inner mark must not make this a no-op
        with tenant_context(tenant_b.tenant.id):
            assert current_tenant_id() == tenant_b.tenant.id


def test_a_rolled_back_inner_switch_leaves_the_outer_tenant(tenant_a, tenant_b):
    with tenant_context(tenant_a.tenant.id):
        try:
            with tenant_context(tenant_b.tenant.id):
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        assert current_tenant_id() == tenant_a.tenant.id
        with tenant_context(tenant_a.tenant.id):
            assert set(ApiKey.objects.values_list("tenant_id", flat=True)) == {tenant_a.tenant.id}


def test_a_reused_atomic_decorator_never_carries_a_tenant_into_its_next_call(tenant_a, tenant_b):
    @transaction.atomic
    def keys_of(tenant_id: int) -> set[int]:
        with tenant_context(tenant_id):
            return set(ApiKey.objects.values_list("tenant_id", flat=True))

    with tenant_context(tenant_a.tenant.id):
        assert keys_of(tenant_b.tenant.id) == {tenant_b.tenant.id}
        assert keys_of(tenant_a.tenant.id) == {tenant_a.tenant.id}
        assert keys_of(tenant_b.tenant.id) == {tenant_b.tenant.id}


def test_tenant_scope_joins_the_same_tenant_for_free_and_never_assumes_another(tenant_a, tenant_b):
    from apps.core.tenant_db import tenant_scope

    with tenant_context(tenant_a.tenant.id):
        with CaptureQueriesContext(connection) as ctx, tenant_scope(tenant_a.tenant.id):
            assert ApiKey.objects.count() == 1
        assert len(ctx.captured_queries) == 1  # the count only: no savepoint, no set_config
        # inside a transaction scoped to A, asking for B must really switch to B
        with tenant_scope(tenant_b.tenant.id):
            assert set(ApiKey.objects.values_list("tenant_id", flat=True)) == {tenant_b.tenant.id}
        assert current_tenant_id() == tenant_a.tenant.id
    with transaction.atomic(), tenant_scope(tenant_a.tenant.id):  # unscoped transaction: scope it
        assert ApiKey.objects.count() == 1


def _transaction_start(cursor) -> object:
    cursor.execute("SELECT now(), txid_current_if_assigned()")
    return cursor.fetchone()[0]


def test_begin_leaves_with_the_tenant_in_one_pipeline_and_opens_one_real_transaction(tenant_a, monkeypatch):
    """psycopg would send BEGIN alone and wait for it: the tenant's set_config rides with it instead.
    Every later statement of the block is in that same server transaction, and the block ends it."""
    from psycopg import pq

    connection.ensure_connection()
    raw_execute = type(connection.connection).execute
    sent: list[tuple[str, bool]] = []

    def spy(self, query, *args, **kwargs):
        sent.append((str(query), self.pgconn.pipeline_status == pq.PipelineStatus.ON))
        return raw_execute(self, query, *args, **kwargs)

    def in_pipeline(execute, sql, params, many, context):  # the statements Django's cursors send
        sent.append((sql.split("(")[0], connection.connection.pgconn.pipeline_status == pq.PipelineStatus.ON))
        return execute(sql, params, many, context)

    raw_pipeline = type(connection.connection).pipeline
    pipelines: list[int] = []

    def counted_pipeline(self):
        pipelines.append(len(sent))
        return raw_pipeline(self)

    connection.ensure_connection()
    monkeypatch.setattr(type(connection.connection), "execute", spy)
    monkeypatch.setattr(type(connection.connection), "pipeline", counted_pipeline)
    with (
        CaptureQueriesContext(connection) as ctx,
        connection.execute_wrapper(in_pipeline),
        tenant_context(tenant_a.tenant.id),
        connection.cursor() as cursor,
    ):
        assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.INTRANS
        started = _transaction_start(cursor)
        cursor.execute("SELECT pg_sleep(0.01)")
        assert _transaction_start(cursor) == started  # now() is frozen: one transaction
        assert current_tenant_id() == tenant_a.tenant.id
    # one pipeline, entered before both and holding both: BEGIN and the setting leave in one write
    assert pipelines == [0] and sent[:2] == [("BEGIN", True), ("SELECT set_config", True)]
    assert not any(in_pipe for _, in_pipe in sent[2:])
    assert [q["sql"].split("(")[0] for q in ctx.captured_queries][:2] == ["BEGIN", "SELECT set_config"]
    assert ctx.captured_queries[-1]["sql"] == "COMMIT"
    assert connection.connection.pgconn.transaction_status == pq.TransactionStatus.IDLE
    assert connection.get_autocommit() and connection.connection.autocommit
    assert current_tenant_id() is None  # the setting ended with the transaction


def test_a_transaction_opened_with_its_tenant_rolls_back_whole(tenant_a):
    from apps.tenancy.models import Tenant

    name = Tenant.objects.get(pk=tenant_a.tenant.id).name
    try:
        with tenant_context(tenant_a.tenant.id):
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE tenancy_tenant SET name = 'changed' WHERE id = %s", [tenant_a.tenant.id]
                )
                assert cursor.rowcount == 1
            with transaction.atomic():  # a savepoint inside still works
                ApiKey.objects.filter(tenant_id=tenant_a.tenant.id).update(name="inner")
                transaction.set_rollback(True)
            assert ApiKey.objects.get(tenant_id=tenant_a.tenant.id).name != "inner"
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert Tenant.objects.get(pk=tenant_a.tenant.id).name == name
    with tenant_context(tenant_a.tenant.id):  # and the next transaction opens the same way
        assert Tenant.objects.get(pk=tenant_a.tenant.id).name == name


def test_under_manual_transactions_the_next_statement_after_a_commit_opens_a_transaction_again(tenant_a):
    """Django's set_autocommit(False) promises that every statement runs in a transaction that only
    commit() ends. A transaction the tenant setting opened must not leave psycopg in autocommit."""
    from apps.tenancy.models import Tenant

    name = Tenant.objects.get(pk=tenant_a.tenant.id).name
    connection.set_autocommit(False)
    try:
        with transaction.atomic(savepoint=False):  # no SAVEPOINT: the setting is the first statement
            activate_tenant(tenant_a.tenant.id)
        connection.commit()
        with connection.cursor() as cursor:  # two statements, one transaction: the tenant reaches the update
            cursor.execute("SELECT set_config('app.tenant_id', %s, true)", [str(tenant_a.tenant.id)])
            cursor.execute(
                "UPDATE tenancy_tenant SET name = 'uncommitted' WHERE id = %s", [tenant_a.tenant.id]
            )
            assert cursor.rowcount == 1
        connection.rollback()
    finally:
        connection.set_autocommit(True)
    assert Tenant.objects.get(pk=tenant_a.tenant.id).name == name


def test_a_named_cursor_in_a_transaction_the_tenant_opened_is_not_holdable(tenant_a):
    """Django makes server-side cursors holdable from psycopg's autocommit flag, which the tenant's
    BEGIN leaves on: a holdable cursor cannot lock rows and would outlive its transaction."""
    with tenant_context(tenant_a.tenant.id):
        rows = ApiKey.objects.iterator(chunk_size=1)
        assert next(rows).tenant_id == tenant_a.tenant.id  # the named cursor is open from here
        with connection.cursor() as cursor:
            cursor.execute("SELECT is_holdable FROM pg_cursors WHERE name LIKE %s", ["_django_curs_%"])
            assert [holdable for (holdable,) in cursor.fetchall()] == [False]
        assert list(rows) == []
        locked = list(ApiKey.objects.select_for_update().iterator(chunk_size=10))
        assert [key.tenant_id for key in locked] == [tenant_a.tenant.id]

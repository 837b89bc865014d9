"""The database itself keeps the audit log append-only: privileges for the runtime role,
triggers for everyone else (the owner included), a link check on insert, and RLS."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import ProtectedError

from apps.audit.models import AuditCheckpoint, AuditEvent
from apps.audit.services import audit_append, audit_checkpoint
from apps.core.tenant_db import dangerously_as_platform, tenant_context

TABLES = ["audit_auditevent", "audit_auditcheckpoint"]


@pytest.fixture
def history(tenant_a):
    """Tenant A with a few events and a signed checkpoint, so every table has rows to protect."""
    with tenant_context(tenant_a.tenant.id):
        audit_append(tenant_id=tenant_a.tenant.id, actor="system", action="test.one")
    audit_checkpoint(tenant_id=tenant_a.tenant.id)
    return tenant_a


# --- the runtime role (the normal test connection) ------------------------------------------------


@pytest.mark.parametrize("table", TABLES)
def test_the_runtime_role_holds_only_insert_and_select(live_db, table):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT p, has_table_privilege(current_user, %s, p) FROM unnest(ARRAY["
            "'SELECT','INSERT','UPDATE','DELETE','TRUNCATE']) AS p",
            [table],
        )
        privileges = dict(cursor.fetchall())
    assert privileges == {"SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False, "TRUNCATE": False}


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET sequence = sequence WHERE tenant_id = %s",
        "DELETE FROM {t} WHERE tenant_id = %s",
        "TRUNCATE {t}",
    ],
)
def test_the_runtime_role_cannot_update_delete_or_truncate(history, table, statement):
    sql = statement.format(t=table)
    with (
        tenant_context(history.tenant.id),
        pytest.raises(DatabaseError, match="permission denied"),
        transaction.atomic(),
        connection.cursor() as cur,
    ):
        cur.execute(sql, [history.tenant.id] if "%s" in sql else [])
    with tenant_context(history.tenant.id):
        assert AuditEvent.objects.filter(tenant_id=history.tenant.id).count() >= 2


# --- the owner: privileges would allow it, the triggers refuse -------------------------------------


@pytest.mark.parametrize("table", TABLES)
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET sequence = sequence WHERE tenant_id = %s",
        "DELETE FROM {t} WHERE tenant_id = %s",
        "TRUNCATE {t}",
    ],
)
def test_the_triggers_stop_even_the_table_owner(history, owner_conn, table, statement):
    sql = statement.format(t=table)
    with owner_conn.cursor() as cur:
        # The owner is under forced RLS too: make the rows visible, so the statement really reaches them.
        cur.execute("SELECT set_config('app.platform', 'on', false)")
        cur.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [history.tenant.id])  # noqa: S608 - fixed names
        assert cur.fetchone()[0] >= 1
        owner_conn.commit()
        with pytest.raises(Exception, match="append-only"):
            cur.execute(sql, [history.tenant.id] if "%s" in sql else [])
        owner_conn.rollback()
        cur.execute("SELECT set_config('app.platform', 'on', false)")
        cur.execute(f"SELECT count(*) FROM {table} WHERE tenant_id = %s", [history.tenant.id])  # noqa: S608
        assert cur.fetchone()[0] >= 1


def test_a_tenant_with_history_cannot_be_deleted(history, owner_conn):
    from apps.tenancy.models import Tenant

    with pytest.raises(ProtectedError), dangerously_as_platform():
        Tenant.objects.filter(pk=history.tenant.id).delete()
    # Below Django too: the foreign key (checked at commit) refuses the owner's raw DELETE.
    with owner_conn.cursor() as cur, pytest.raises(Exception, match="foreign key"):
        cur.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cur.execute("DELETE FROM tenancy_membership WHERE tenant_id = %s", [history.tenant.id])
        cur.execute("DELETE FROM tenancy_apikey WHERE tenant_id = %s", [history.tenant.id])
        cur.execute("DELETE FROM tenancy_tenant WHERE id = %s", [history.tenant.id])
    owner_conn.rollback()
    assert Tenant.objects.filter(pk=history.tenant.id).exists()


# --- inserts must extend the chain head ------------------------------------------------------------


def _forged(tenant, **overrides):
    with tenant_context(tenant.id):
        head = AuditEvent.objects.filter(tenant_id=tenant.id).order_by("-sequence").first()
    assert head is not None
    fields = {
        "tenant_id": tenant.id,
        "tenant_slug": tenant.slug,
        "sequence": head.sequence + 1,
        "time": head.time,
        "actor": "mallory",
        "action": "forged",
        "details": {},
        "prev_hash": head.hash,
        "hash": "0" * 64,
    }
    fields.update(overrides)
    return fields, head


@pytest.mark.parametrize(
    "override",
    [
        {"prev_hash": "f" * 64},  # does not link to the head
        {"sequence": "gap"},  # skips a sequence
        {"sequence": "dup"},  # reuses the head's sequence
        {"tenant_slug": "someone-else"},
    ],
)
def test_an_insert_that_does_not_extend_the_head_is_refused(history, override):
    fields, head = _forged(history.tenant)
    if override.get("sequence") == "gap":
        override = {"sequence": head.sequence + 2}
    elif override.get("sequence") == "dup":
        override = {"sequence": head.sequence}
    fields.update(override)
    with tenant_context(history.tenant.id), pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.create(**fields)
    with tenant_context(history.tenant.id):
        assert not AuditEvent.objects.filter(tenant_id=history.tenant.id, action="forged").exists()


def test_a_correctly_linked_insert_passes_the_trigger(history):
    # Control for the test above: the trigger is not refusing everything.
    fields, _ = _forged(history.tenant)
    with transaction.atomic(), tenant_context(history.tenant.id):
        event = AuditEvent.objects.create(**fields)
        assert AuditEvent.objects.filter(pk=event.pk, sequence=fields["sequence"]).exists()
        transaction.set_rollback(True)


# --- row-level security ---------------------------------------------------------------------------


def test_tenants_see_only_their_own_chain(history, tenant_b):
    with tenant_context(tenant_b.tenant.id):
        seen = set(AuditEvent.objects.values_list("tenant_id", flat=True))
        assert seen == {tenant_b.tenant.id}
        assert set(AuditCheckpoint.objects.values_list("tenant_id", flat=True)) <= {tenant_b.tenant.id}


def test_platform_events_are_visible_only_as_platform(live_db):
    audit_append(tenant_id=None, actor="system", action="test.platform")
    with transaction.atomic():
        assert not AuditEvent.objects.filter(tenant__isnull=True).exists()
    with dangerously_as_platform():
        assert AuditEvent.objects.filter(tenant__isnull=True, action="test.platform").exists()


def test_a_tenant_cannot_write_into_another_tenants_chain(history, tenant_b):
    from apps.audit.chain import genesis_hash

    # A's genesis link: under B the trigger cannot see A's head, so it is RLS that must refuse it.
    fields, _ = _forged(history.tenant, sequence=1, prev_hash=genesis_hash(history.tenant.slug))
    with (
        tenant_context(tenant_b.tenant.id),
        pytest.raises(DatabaseError, match="row-level security"),
        transaction.atomic(),
    ):
        AuditEvent.objects.create(**fields)


def test_connect_as_reaches_the_same_database(owner_conn):
    with owner_conn.cursor() as cur:
        cur.execute("SELECT current_database(), current_user")
        name, user = cur.fetchone()
    assert name == connection.settings_dict["NAME"]
    assert user != connection.settings_dict["USER"]

"""Row-level security plumbing: which tenant the current transaction may see.

The tenant is set per transaction with ``set_config(..., true)`` so a pooled connection can never
carry one request's tenant into the next. Code that must cross tenants uses the explicitly named
``dangerously_as_platform`` and loops tenant by tenant wherever it can.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from psycopg import pq

TENANT_GUC = "app.tenant_id"
API_KEY_PREFIX_GUC = "app.api_key_prefix"
USER_GUC = "app.user_id"
PLATFORM_GUC = "app.platform"


_SET_SQL = "SELECT set_config(%s, %s, true)"


def _set(name: str, value: str) -> None:
    if not connection.in_atomic_block:
        raise RuntimeError(f"{name} must be set inside a transaction (it is transaction-local)")
    connection.ensure_connection()
    raw = connection.connection
    if (
        not raw.autocommit
        and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
        and raw.pgconn.pipeline_status == pq.PipelineStatus.OFF
        # psycopg's own BEGIN would carry these; the plain one below does not
        and raw.isolation_level is None
        and raw.read_only is None
        and raw.deferrable is None
    ):
        _begin_with(raw, name, value)
        return
    with connection.cursor() as cursor:
        cursor.execute(_SET_SQL, [name, value])


def _begin_with(raw: Any, name: str, value: str) -> None:
    """Open the atomic block's transaction with this setting as its first statement: one round trip.

    psycopg opens a transaction with a ``BEGIN`` that it sends alone and waits for, even in pipeline
    mode, so a request's transaction and its tenant cost two round trips. Here the setting is
    usually the transaction's first statement, so ``BEGIN`` is sent by hand in one pipeline with it.
    For that psycopg's ``autocommit`` is switched on while the connection is idle (a local flag, no
    round trip) and stays on until Django's atomic block ends, as the transaction is now open on the
    server: psycopg sends no ``BEGIN`` of its own while it is, and its ``commit()`` and
    ``rollback()`` act on the server's transaction status, not on that flag, so Django's block ends
    it exactly as before. Django logged the ``BEGIN`` when the block opened; the setting is logged
    like any statement.
    """
    with connection.wrap_database_errors:
        raw.autocommit = True
        try:
            with raw.pipeline(), connection.cursor() as cursor:
                raw.execute("BEGIN")
                cursor.execute(_SET_SQL, [name, value])
        except BaseException:
            # No transaction reached the server (a send error, a time limit): psycopg must open the
            # block's transaction itself again, or the rest of the block would autocommit.
            if raw.pgconn.transaction_status == pq.TransactionStatus.IDLE and not raw.closed:
                raw.autocommit = False
            raise


_MARK = "_sotto_tenant"


def activate_tenant(tenant_id: int) -> None:
    """Scope the current transaction to one tenant (RLS reads it).

    The tenant is also remembered on the innermost atomic block, so nested ``tenant_context``
    calls for the same tenant (selectors called from a scoped view) cost no round trip. A
    savepoint rollback pops that block, exactly as PostgreSQL rolls the setting back.
    """
    _set(TENANT_GUC, str(int(tenant_id)))
    if connection.atomic_blocks:
        setattr(connection.atomic_blocks[-1], _MARK, int(tenant_id))


def _known_tenant() -> int | bool | None:
    """The tenant this transaction was scoped to through ``activate_tenant``; False when unknown."""
    for block in reversed(connection.atomic_blocks):
        if hasattr(block, _MARK):
            value: int | None = getattr(block, _MARK)
            return value
    return False


def current_tenant_id() -> int | None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT NULLIF(current_setting(%s, true), '')", [TENANT_GUC])
        row = cursor.fetchone()
    return int(row[0]) if row and row[0] is not None else None


@contextlib.contextmanager
def tenant_context(tenant_id: int) -> Iterator[None]:
    """Open (or join) a transaction scoped to ``tenant_id``; restores the outer tenant on exit.

    Costs one ``set_config`` in a new transaction, nothing extra beyond the savepoint when the
    enclosing transaction is already scoped to the same tenant.
    """
    tenant_id = int(tenant_id)
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        block = connection.atomic_blocks[-1]
        try:
            if outermost:  # a fresh transaction has no tenant: nothing to restore afterwards
                activate_tenant(tenant_id)
                yield
                return
            known = _known_tenant()
            if known is not False and known == tenant_id:
                yield
                return
            outer = known if known is not False else current_tenant_id()
            activate_tenant(tenant_id)
            yield
            # Only on a clean exit: after an error the savepoint/transaction rollback restores the
            # setting itself, and a query on an aborted transaction would mask the original error.
            if not connection.needs_rollback:  # set_rollback(True) inside: the rollback restores it
                _set(TENANT_GUC, "" if outer is None else str(outer))
        finally:
            # Atomic objects can be reused (as decorators): never let a mark outlive its block.
            if hasattr(block, _MARK):
                delattr(block, _MARK)


@contextlib.contextmanager
def tenant_scope(tenant_id: int) -> Iterator[None]:
    """Join a transaction already scoped to ``tenant_id`` for free (no savepoint, no query);
    otherwise behave exactly like :func:`tenant_context`.

    For selectors called both from scoped requests and on their own. It checks the tenant the
    transaction is really scoped to, never assumes it from being inside *some* transaction.
    """
    known = _known_tenant() if connection.in_atomic_block else False
    if known is not False and known == int(tenant_id):
        yield
        return
    with tenant_context(tenant_id):
        yield


@contextlib.contextmanager
def api_key_lookup(prefix: str) -> Iterator[None]:
    """Let the current transaction see exactly the API keys with this public prefix."""
    with transaction.atomic():
        _set(API_KEY_PREFIX_GUC, prefix)
        yield
        if not connection.needs_rollback:
            _set(API_KEY_PREFIX_GUC, "")


@contextlib.contextmanager
def user_memberships(user_id: int) -> Iterator[None]:
    """Let the current transaction see this Django user's own memberships (admin sign-in)."""
    with transaction.atomic():
        _set(USER_GUC, str(int(user_id)))
        yield


@contextlib.contextmanager
def dangerously_as_platform() -> Iterator[None]:
    """See every tenant's rows: platform operators and cross-tenant maintenance only."""
    with transaction.atomic():
        _set(PLATFORM_GUC, "on")
        yield
        if not connection.needs_rollback:
            _set(PLATFORM_GUC, "")

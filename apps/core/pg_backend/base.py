"""Django's PostgreSQL backend, with a connection health check that costs no round trip, and
psycopg's ``autocommit`` flag put back in line with Django's after every transaction.

``CONN_HEALTH_CHECKS`` makes Django send ``SELECT 1`` before the first query of every request on
a reused connection: one round trip on every API call, as long as the hot paths' own statements.
A connection that died while idle between requests (PostgreSQL restarted or stopped, the backend
terminated) is not silent: the server sends its FATAL message and closes the socket, so the
socket turns readable. An idle connection with nothing to read is therefore alive as far as the
client can know without asking; one with something to read gets Django's real ``SELECT 1`` check
(a stray notice passes it, a goodbye fails it and the connection is replaced before the request
uses it). A peer that vanished without a word (a cut network) is caught as before Django's check
existed: the request's first statement fails, the API answers 503 with ``Retry-After``, and
Django closes the connection at the end of that request.

``apps.core.tenant_db`` opens a transaction with its RLS setting in one round trip by switching
psycopg's ``autocommit`` on and sending ``BEGIN`` itself. psycopg keeps that flag until told
otherwise, so after each commit or rollback the backend sets it back to Django's own view: under
``set_autocommit(False)`` the next statement opens a transaction again, as Django promises; and a
named (server-side) cursor opened inside such a transaction is not made holdable.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.postgresql import base
from psycopg import pq

__all__ = ["DatabaseWrapper", "idle_socket_quiet"]


def idle_socket_quiet(raw: Any) -> bool:
    """True when ``raw`` (a psycopg connection) is open, idle and has nothing waiting to be read."""
    if raw.closed or raw.broken or raw.pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return False
    poller = select.poll()  # not select(): it cannot watch a descriptor numbered 1024 or more
    try:
        poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
        ready = poller.poll(0)
    except (OSError, ValueError):  # the descriptor is gone
        return False
    return not ready


class DatabaseWrapper(base.DatabaseWrapper):  # type: ignore[misc]  # Django's class is untyped
    def create_cursor(self, name: str | None = None) -> Any:
        cursor = super().create_cursor(name)
        if name and cursor.withhold and not self.autocommit:
            # Django makes a named cursor holdable when psycopg's autocommit flag is on, which
            # tenant_db leaves on inside a transaction it opened; inside a transaction Django's own
            # flag is the truth (a holdable cursor cannot be FOR UPDATE and outlives its transaction).
            cursor._withhold = False
        return cursor

    def commit(self) -> None:
        super().commit()
        self._align_autocommit()

    def rollback(self) -> None:
        super().rollback()
        self._align_autocommit()

    def _align_autocommit(self) -> None:
        raw = self.connection
        if (
            raw is not None
            and raw.autocommit != self.autocommit
            and raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
        ):
            with self.wrap_database_errors:
                raw.autocommit = self.autocommit

    def close_if_health_check_failed(self) -> None:
        state: Any = self  # django-stubs lack the pool and health-check attributes this reads
        if state.pool or self.connection is None or not state.health_check_enabled or state.health_check_done:
            return
        if not idle_socket_quiet(self.connection) and not self.is_usable():
            self.close()
        state.health_check_done = True

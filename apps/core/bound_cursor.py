"""One cursor for the hot paths' SQL: parameters bound on the server, results in binary.

Django's own cursors bind client-side: every parameter is quoted into the statement text, which the
server then lexes, and bytea and vectors go as text both ways. :func:`bound_cursor` gives a psycopg
cursor on the request's own connection and transaction that binds on the server, in binary where it
can (bytea, numeric arrays, pgvector's binary form with ``vectors=True``), and reads results in
binary. It is wrapped like any Django cursor, so the transaction, error translation (a deadlock is
still an ``OperationalError`` that ``TenantAPIView`` reruns), the query log and the tests' query
counts all see it. psycopg prepares a statement once it has run ``DATABASE_PREPARE_THRESHOLD`` times
on a connection (5 by default; ``off`` never, for PgBouncer's transaction pooling before 1.22):
the hot paths then skip their statements' parse and, where a generic plan is as good, planning.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

import psycopg
from django.db import connection

from apps.core.vector_adapters import adapt_vectors

__all__ = ["BoundCursor", "bound_cursor"]


class BoundCursor(psycopg.Cursor[Any]):
    """Server-side binding; results in binary unless a call asks otherwise."""

    def execute(
        self, query: Any, params: Any = None, *, prepare: bool | None = None, binary: bool | None = None
    ) -> Self:
        return super().execute(query, params, prepare=prepare, binary=True if binary is None else binary)

    def _send_query_prepared(self, name: bytes, pgq: Any, *, binary: bool | None = None) -> None:
        # psycopg keeps the statement text for ``last_executed_query`` only when it sends it unprepared;
        # keep it for a prepared run too, so Django's query log (and the tests' counts) still show it.
        self._query = pgq
        super()._send_query_prepared(name, pgq, binary=binary)


@contextmanager
def bound_cursor(*, vectors: bool = False) -> Iterator[Any]:
    """A :class:`BoundCursor` wrapped as a Django cursor; ``vectors`` registers pgvector's adapters on it."""
    connection.validate_thread_sharing()
    with connection.wrap_database_errors:
        connection.ensure_connection()
        raw = BoundCursor(connection.connection)
    if vectors:
        adapt_vectors(raw)
    wrapped: Any = raw  # Django's wrappers take any DB-API cursor (the stubs say CursorWrapper)
    cursor = (
        connection.make_debug_cursor(wrapped)
        if connection.queries_logged
        else connection.make_cursor(wrapped)
    )
    with cursor:
        yield cursor

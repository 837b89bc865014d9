"""Privileges of the runtime role, re-applied after every migrate.

The runtime role gets plain DML on every table; tables registered as append-only get only INSERT
and SELECT, so even a compromised web process cannot rewrite history.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper

from apps.core.conf import sotto

APPEND_ONLY_TABLES: set[str] = set()


def register_append_only(table: str) -> None:
    APPEND_ONLY_TABLES.add(table)


def grant_runtime_privileges(connection: BaseDatabaseWrapper, owner_user: str) -> None:
    runtime = sotto().runtime_role
    if not runtime or runtime == owner_user:
        return
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {qn(runtime)}")
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {qn(runtime)}"
        )
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {qn(runtime)}")
        cursor.execute(f"REVOKE TRUNCATE ON ALL TABLES IN SCHEMA public FROM {qn(runtime)}")
        for table in sorted(APPEND_ONLY_TABLES):
            cursor.execute(f"REVOKE UPDATE, DELETE, TRUNCATE ON {qn(table)} FROM {qn(runtime)}")

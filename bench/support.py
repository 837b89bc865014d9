"""What several benchmarks share: a database of their own, created and migrated as the owner role."""

from __future__ import annotations

import socket


def ensure_bench_database(name: str) -> None:
    """Create ``name`` on first use and migrate it; the caller's settings already point at it."""
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    assert connection.settings_dict["NAME"] == name, "a benchmark runs against its own database only"
    runtime = {k: connection.settings_dict[k] for k in ("USER", "PASSWORD")}
    connection.settings_dict.update(settings.DATABASE_OWNER)
    try:
        with connection._nodb_cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
            if cursor.fetchone() is None:
                cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
        connection.settings_dict.update(runtime)
    call_command("migrate", verbosity=0, interactive=False)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for servers a benchmark starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

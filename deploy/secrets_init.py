"""Create the secrets the compose stack needs, once, and never overwrite one that exists.

``docker compose -f deploy/compose.yaml up`` runs this in a one-shot ``secrets`` service (the Sotto
image, as root) against the ``secrets`` volume; every other service waits for it and mounts only
its own folder of that volume (a volume *subpath*), read-only:

=========  =====================================================================  ==========
folder     files                                                                  read by
=========  =====================================================================  ==========
app/       django_secret_key, master_key, audit_signing_key, metrics_token,        web, workers,
           database_url (runtime role), celery_broker_url, rate_limit_redis_url   beat, migrate
migrate/   database_owner_url (owner role: migrations only)                       migrate
db/        superuser_password, owner_password, app_password                       PostgreSQL
redis/     redis.conf (requirepass, append-only file), password                   Redis
=========  =====================================================================  ==========

Files are mode 0400, owned by the user of the container that reads them (Sotto 10001, the
PostgreSQL and Redis images 999). Passwords are generated first and the URLs derived from them,
so a URL always matches the role's password. Outside compose it prints nothing secret and can
seed a Kubernetes Secret: ``python deploy/secrets_init.py OUT --db-host pg.internal ...``.

Key formats: the master key is 32 random bytes, standard base64; the audit signing key is an
Ed25519 private key, PKCS#8 PEM (what ``apps.audit.chain.load_private_key_pem`` accepts).
"""

from __future__ import annotations

import argparse
import base64
import os
import secrets
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

APP_UID = 10001  # the `sotto` user of deploy/Dockerfile
POSTGRES_UID = 999  # the `postgres` user of the pgvector/pgvector (postgres) image
REDIS_UID = 999  # the `redis` user of the redis image

OWNER_ROLE = "sotto_owner"
RUNTIME_ROLE = "sotto_app"
DATABASE = "sotto"

#: folder -> (files, uid of the reader). tests/deploy checks compose mounts against this.
LAYOUT: dict[str, tuple[tuple[str, ...], int]] = {
    "app": (
        (
            "django_secret_key",
            "master_key",
            "audit_signing_key",
            "metrics_token",
            "database_url",
            "celery_broker_url",
            "rate_limit_redis_url",
        ),
        APP_UID,
    ),
    "migrate": (("database_owner_url",), APP_UID),
    "db": (("superuser_password", "owner_password", "app_password"), POSTGRES_UID),
    "redis": (("redis.conf", "password"), REDIS_UID),
}


def _token() -> str:
    return secrets.token_urlsafe(32)


def _master_key() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _ed25519_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def _read(path: Path) -> str | None:
    return path.read_text().strip() if path.is_file() else None


def _write(path: Path, value: str, uid: int) -> bool:
    """Create ``path`` (0400, owned by ``uid`` when running as root); False if it already exists."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o400)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(value if value.endswith("\n") else value + "\n")
    if os.geteuid() == 0:
        os.chown(path, uid, uid)
    return True


def ensure(
    out: Path, *, db_host: str = "db", db_port: int = 5432, redis_host: str = "redis", redis_port: int = 6379
) -> list[str]:
    """Create every missing file under ``out``; return the relative paths created (never values)."""

    def existing_or_new(folder: str, name: str, make: Callable[[], str]) -> str:
        return _read(out / folder / name) or make()

    owner_pw = existing_or_new("db", "owner_password", _token)
    app_pw = existing_or_new("db", "app_password", _token)
    redis_pw = existing_or_new("redis", "password", _token)

    def pg_url(role: str, password: str) -> str:
        return f"postgresql://{role}:{quote(password, safe='')}@{db_host}:{db_port}/{DATABASE}"

    values: dict[str, dict[str, Callable[[], str]]] = {
        "app": {
            "django_secret_key": lambda: secrets.token_urlsafe(64),
            "master_key": _master_key,
            "audit_signing_key": _ed25519_pem,
            "metrics_token": _token,
            "database_url": lambda: pg_url(RUNTIME_ROLE, app_pw),
            "celery_broker_url": lambda: f"redis://:{quote(redis_pw, safe='')}@{redis_host}:{redis_port}/0",
            # API rate-limit buckets: the same Redis, another database than the broker's.
            "rate_limit_redis_url": lambda: (
                f"redis://:{quote(redis_pw, safe='')}@{redis_host}:{redis_port}/1"
            ),
        },
        "migrate": {"database_owner_url": lambda: pg_url(OWNER_ROLE, owner_pw)},
        "db": {
            "superuser_password": _token,
            "owner_password": lambda: owner_pw,
            "app_password": lambda: app_pw,
        },
        "redis": {
            "password": lambda: redis_pw,
            # A broker: keep tasks across restarts and never evict them.
            "redis.conf": lambda: (
                f"requirepass {redis_pw}\nbind * -::*\nprotected-mode yes\ndir /data\n"
                "appendonly yes\nappendfsync everysec\nmaxmemory-policy noeviction\n"
            ),
        },
    }
    created: list[str] = []
    for folder, (names, uid) in LAYOUT.items():
        folder_path = out / folder
        folder_path.mkdir(mode=0o755, parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(folder_path, uid, uid)
            folder_path.chmod(0o500)
        for name in names:
            if _write(folder_path / name, values[folder][name](), uid):
                created.append(f"{folder}/{name}")
    return created


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--db-host", default="db")
    parser.add_argument("--db-port", type=int, default=5432)
    parser.add_argument("--redis-host", default="redis")
    parser.add_argument("--redis-port", type=int, default=6379)
    args = parser.parse_args(argv)
    created = ensure(
        args.out,
        db_host=args.db_host,
        db_port=args.db_port,
        redis_host=args.redis_host,
        redis_port=args.redis_port,
    )
    sys.stdout.write(f"secrets: created {', '.join(created)}\n" if created else "secrets: all present\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

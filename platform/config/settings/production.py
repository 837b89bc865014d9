"""Production: external PostgreSQL and Redis, HTTPS behind a proxy, nothing guessed.

The required environment is checked *before* ``base`` is imported: ``base`` resolves the database
at import time and, with no ``DATABASE_URL``, would start the embedded PostgreSQL. Production must
never do that, so a missing variable stops the process here with a ``ConfigError`` naming it.

Secrets may be given as ``NAME`` or as ``NAME_FILE`` (a file holding the value: container and
Kubernetes secrets), as ``config.env.env_secret`` reads them. That includes the URLs that carry
passwords (``DATABASE_URL``, ``DATABASE_OWNER_URL``, ``CELERY_BROKER_URL``,
``SOTTO_RATE_LIMIT_REDIS_URL``): ``base`` reads those as plain variables, so a ``NAME_FILE`` is
read into ``NAME`` here, before ``base`` runs.
"""

from __future__ import annotations

import os
from pathlib import Path

from config.env import ConfigError, env_bool, env_secret, env_str

#: Settings refuse to start without these (each may also come as NAME_FILE when it is a secret).
#: tests/deploy reads this tuple to check that every Django container is given all of them.
REQUIRED_ENV = (
    "DJANGO_SECRET_KEY",
    "DJANGO_ALLOWED_HOSTS",
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SOTTO_MASTER_KEY",
    "SOTTO_AUDIT_SIGNING_KEY",
)
#: Plain (non-secret) variables: NAME only, never NAME_FILE.
PLAIN_ENV = ("DJANGO_ALLOWED_HOSTS",)
#: URLs holding credentials that ``base`` reads with ``env_str``; production also accepts NAME_FILE.
_URL_SECRETS = ("DATABASE_URL", "DATABASE_OWNER_URL", "CELERY_BROKER_URL", "SOTTO_RATE_LIMIT_REDIS_URL")


def _load_required_env() -> None:
    for name in _URL_SECRETS:
        value = env_secret(name)  # raises ConfigError when NAME_FILE names a missing file
        if value and not os.environ.get(name):
            os.environ[name] = value
    missing = [
        name for name in REQUIRED_ENV if not (env_str(name) if name in PLAIN_ENV else env_secret(name))
    ]
    if missing:
        hints = ", ".join(name if name in PLAIN_ENV else f"{name} (or {name}_FILE)" for name in missing)
        raise ConfigError(f"production settings need {hints}; refusing to start")
    if env_bool("DJANGO_DEBUG", False):
        raise ConfigError("DJANGO_DEBUG=true is refused by config.settings.production")


_load_required_env()

from config.settings.base import *  # noqa: E402, F403 - only after the environment check above
from config.settings.base import BASE_DIR, DATABASE_IS_EMBEDDED  # noqa: E402

if DATABASE_IS_EMBEDDED:  # cannot happen with DATABASE_URL set; kept as the last line of defence
    raise ConfigError("production settings resolved the embedded PostgreSQL; set DATABASE_URL")

DEBUG = False

# TLS ends at the load balancer / ingress, which sets X-Forwarded-Proto; never trust it otherwise.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = True
# Probes (kubelet, compose health checks) speak plain HTTP to the pod: answer them, do not redirect.
SECURE_REDIRECT_EXEMPT = [r"^health/"]
SECURE_HSTS_SECONDS = 365 * 24 * 3600
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# The __Host- prefix makes browsers refuse the cookie unless Secure, host-only and Path=/.
SESSION_COOKIE_NAME = "__Host-sessionid"
CSRF_COOKIE_NAME = "__Host-csrftoken"

# drf-spectacular adds its schema-generation warnings (an APIView whose serializer it cannot guess,
# an authenticator with no OpenAPI extension) to `check --deploy`. They are documentation gaps the
# API's own tests own, not deployment hazards; a schema that fails to generate (E001) still fails.
SILENCED_SYSTEM_CHECKS = ["drf_spectacular.W001", "drf_spectacular.W002"]

# Static files are collected into the image at build time (read-only root filesystem is fine) and
# served by WhiteNoise from there; SOTTO_STATIC_ROOT moves them (tests do). Hashed names
# (CompressedManifestStaticFilesStorage) would need the vendored Chart.js's missing source map.
STATIC_ROOT = Path(env_str("SOTTO_STATIC_ROOT") or BASE_DIR / "staticfiles")
WHITENOISE_USE_FINDERS = False

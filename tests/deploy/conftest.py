"""A complete, valid production environment for subprocesses, pointing at the test database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.manifests import clean_env, database_url_from_settings, secrets_init


@pytest.fixture
def production_env(django_db_setup: None, tmp_path: Path) -> dict[str, str]:
    """What a Sotto container gets: secrets as files (made by deploy/secrets_init.py, so in their
    real formats), DATABASE_URL and CELERY_BROKER_URL pointing at this test session's migrated
    database and its broker, state under a temporary SOTTO_VAR_DIR, and nothing inherited from the
    test settings."""
    from django.conf import settings

    secrets = tmp_path / "secrets"
    secrets_init().ensure(secrets)
    app = secrets / "app"
    return {
        **clean_env(),
        "DJANGO_SETTINGS_MODULE": "config.settings.production",
        "DJANGO_ALLOWED_HOSTS": "sotto.example.com,localhost",
        "DJANGO_SECRET_KEY_FILE": str(app / "django_secret_key"),
        "SOTTO_MASTER_KEY_FILE": str(app / "master_key"),
        "SOTTO_AUDIT_SIGNING_KEY_FILE": str(app / "audit_signing_key"),
        "SOTTO_METRICS_TOKEN_FILE": str(app / "metrics_token"),
        "DATABASE_URL": database_url_from_settings(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "SOTTO_VAR_DIR": str(tmp_path / "var"),
        "HOME": str(tmp_path),
        "SOTTO_STATIC_ROOT": str(tmp_path / "static"),
    }

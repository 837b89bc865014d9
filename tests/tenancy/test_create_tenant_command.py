import json
import subprocess
import sys
from pathlib import Path

from tests.support import unique_slug

ROOT = Path(__file__).resolve().parents[2]


def test_create_tenant_prints_json_with_a_working_key(live_db, api):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    slug = unique_slug("cli")
    call_command("create_tenant", slug, "--json", stdout=out)
    payload = json.loads(out.getvalue())
    assert payload["tenant"] == slug
    response = api.get("/api/v1/tenant", HTTP_AUTHORIZATION=f"Bearer {payload['api_key']}")
    assert response.status_code == 200
    assert response.json()["scopes"] == ["admin", "audit", "ingest", "serve", "train"]


def test_create_tenant_refuses_a_bad_or_duplicate_slug(live_db):
    import os

    from django.conf import settings

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "SOTTO_DB_NAME": settings.DATABASES["default"]["NAME"],
    }
    bad = subprocess.run(
        [sys.executable, "manage.py", "create_tenant", "Bad Slug!"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0
    assert "slug must be" in bad.stderr

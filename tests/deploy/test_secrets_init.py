"""deploy/secrets_init.py writes keys in the formats the apps accept, and never replaces one."""

from __future__ import annotations

import stat
from urllib.parse import unquote

from tests.deploy.manifests import secrets_init


def test_it_writes_every_file_of_the_layout_readable_only_by_its_owner(tmp_path):
    module = secrets_init()

    created = module.ensure(tmp_path)

    expected = {f"{folder}/{name}" for folder, (names, _) in module.LAYOUT.items() for name in names}
    assert set(created) == expected
    for relative in expected:
        assert stat.S_IMODE((tmp_path / relative).stat().st_mode) == 0o400, relative


def test_the_keys_are_in_the_formats_the_apps_read(tmp_path):
    from django.core.checks.security.base import _check_secret_key  # type: ignore[attr-defined]  # Django's own W009 rule, unstubbed

    from apps.audit.chain import load_private_key_pem
    from apps.tenancy.keyring import parse_master_key
    from config.database import _from_url

    secrets_init().ensure(tmp_path)
    app = tmp_path / "app"

    assert len(parse_master_key((app / "master_key").read_text(), source="test")) == 32
    load_private_key_pem((app / "audit_signing_key").read_bytes())
    assert _check_secret_key((app / "django_secret_key").read_text().strip())
    runtime = _from_url((app / "database_url").read_text().strip())
    owner = _from_url((tmp_path / "migrate" / "database_owner_url").read_text().strip())
    assert (runtime["USER"], runtime["HOST"], runtime["NAME"]) == ("sotto_app", "db", "sotto")
    assert runtime["PASSWORD"] == (tmp_path / "db" / "app_password").read_text().strip()
    assert (owner["USER"], owner["PASSWORD"]) == (
        "sotto_owner",
        (tmp_path / "db" / "owner_password").read_text().strip(),
    )
    redis_password = (tmp_path / "redis" / "password").read_text().strip()
    assert f"requirepass {redis_password}\n" in (tmp_path / "redis" / "redis.conf").read_text()
    for name, database in (("celery_broker_url", "/0"), ("rate_limit_redis_url", "/1")):
        url = (app / name).read_text().strip()
        assert unquote(url) == f"redis://:{redis_password}@redis:6379{database}"


def test_a_second_run_keeps_every_secret_and_fills_in_only_what_is_missing(tmp_path):
    module = secrets_init()
    module.ensure(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    (tmp_path / "app" / "database_url").unlink()

    created = module.ensure(tmp_path)

    assert created == ["app/database_url"]
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # the URL is derived again from the password already in db/

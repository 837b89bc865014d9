"""`manage.py check --deploy` with config.settings.production, and its refusals at start.

`check --deploy` does not connect to the database (no check here queries it; a URL to an
unresolvable host passes as well), but the URL points at the real test database anyway, so a
check that starts querying finds one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.manifests import required_env, run_manage


def test_check_deploy_passes_with_the_production_settings_and_a_complete_environment(production_env):
    result = run_manage(["check", "--deploy", "--fail-level", "WARNING"], production_env)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in output and "ERROR" not in output


@pytest.mark.parametrize("name", required_env())
def test_it_refuses_to_start_and_names_the_missing_variable(production_env, name):
    env = {key: value for key, value in production_env.items() if key not in {name, f"{name}_FILE"}}

    result = run_manage(["check"], env)

    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("config.env.ConfigError: production settings need "), result.stderr[-2000:]
    assert name in last_line
    assert all(other not in last_line for other in required_env() if other != name)
    # It stopped before the base settings ran: no embedded PostgreSQL was started.
    assert not (Path(env["SOTTO_VAR_DIR"]) / "pgdata").exists()


def test_a_secret_file_that_is_not_there_is_named_in_the_error(production_env, tmp_path):
    env = {key: value for key, value in production_env.items() if key != "DATABASE_URL"}
    env["DATABASE_URL_FILE"] = str(tmp_path / "no-such-file")

    result = run_manage(["check"], env)

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        f"config.env.ConfigError: DATABASE_URL_FILE points to {tmp_path / 'no-such-file'}, which is not a readable file"
    )


def test_a_url_given_as_a_file_is_used(production_env, tmp_path):
    url_file = tmp_path / "database_url"
    url_file.write_text(production_env["DATABASE_URL"] + "\n")
    env = {key: value for key, value in production_env.items() if key != "DATABASE_URL"}
    env["DATABASE_URL_FILE"] = str(url_file)
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.DATABASES['default']['NAME'], settings.DATABASE_IS_EMBEDDED, settings.DEBUG)"
    )

    result = run_manage(["shell", "-c", code], env)

    assert result.returncode == 0, result.stderr[-2000:]
    from django.db import connections

    assert result.stdout.strip().splitlines()[-1].split() == [
        connections["default"].settings_dict["NAME"],
        "False",
        "False",
    ]


def test_debug_cannot_be_switched_on_in_production(production_env):
    result = run_manage(["check"], {**production_env, "DJANGO_DEBUG": "true"})

    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "config.env.ConfigError: DJANGO_DEBUG=true is refused by config.settings.production"
    )

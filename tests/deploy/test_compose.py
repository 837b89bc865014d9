"""deploy/compose.yaml, parsed: every Django container is fully configured, commands and probes
point at real modules, queues and URLs, and secrets come from files that secrets_init creates."""

from __future__ import annotations

import importlib
import re
from pathlib import PurePosixPath
from typing import Any

import pytest
from django.urls import resolve

from tests.deploy.manifests import (
    COMPOSE_DJANGO_SERVICES,
    DEPLOY,
    compose,
    django_queues,
    dockerfile_stages,
    interpolate,
    option,
    plain_env,
    required_env,
    secrets_init,
)


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def _secret_mounts(service: dict[str, Any]) -> dict[str, str]:
    """mount target -> folder of the `secrets` volume (its subpath)."""
    mounts = {}
    for volume in service.get("volumes", []):
        if (
            isinstance(volume, dict)
            and volume["source"] == "secrets"
            and volume.get("volume", {}).get("subpath")
        ):
            assert volume.get("read_only") is True, f"secrets are mounted read-only: {volume}"
            mounts[volume["target"]] = volume["volume"]["subpath"]
    return mounts


def _secret_files(service: dict[str, Any]) -> set[str]:
    """Paths of the files secrets_init creates, as this service sees them."""
    layout = secrets_init().LAYOUT
    return {
        f"{target}/{name}" for target, folder in _secret_mounts(service).items() for name in layout[folder][0]
    }


def test_the_django_services_are_the_ones_built_from_the_sotto_image():
    built = {name for name, s in _services().items() if s.get("image") == "sotto:local" and name != "secrets"}
    assert built == set(COMPOSE_DJANGO_SERVICES)
    for name in (*COMPOSE_DJANGO_SERVICES, "secrets"):
        build = _services()[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        ).resolve()


@pytest.mark.parametrize("name", COMPOSE_DJANGO_SERVICES)
def test_every_django_service_gets_every_variable_the_production_settings_require(name):
    service = _services()[name]
    env = service["environment"]
    files = _secret_files(service)

    assert env["DJANGO_SETTINGS_MODULE"] == "config.settings.production"
    for variable in required_env():
        if variable in env:
            assert variable in plain_env(), f"{name}: {variable} is a secret: give it as {variable}_FILE"
            continue
        assert variable not in plain_env(), f"{name}: {variable} missing"
        path = env.get(f"{variable}_FILE")
        assert path in files, f"{name}: {variable}_FILE={path!r} is not a file the secrets volume provides"
    # every other *_FILE it is given exists too
    for key, value in env.items():
        if key.endswith("_FILE"):
            assert value in files, f"{name}: {key}={value} is not provided"
    # the queue names must stay the settings' unprefixed ones
    assert "SOTTO_QUEUE_PREFIX" not in env


def test_only_the_migrate_service_holds_the_owner_role_credentials():
    for name in COMPOSE_DJANGO_SERVICES:
        service = _services()[name]
        has_owner = (
            "DATABASE_OWNER_URL_FILE" in service["environment"]
            or "migrate" in _secret_mounts(service).values()
        )
        assert has_owner == (name == "migrate"), name
        assert "DATABASE_OWNER_URL" not in service["environment"]


def test_every_django_service_mounts_the_writable_directories_of_the_image_on_a_read_only_root():
    image_env = dockerfile_stages()[-1].env()
    for name in COMPOSE_DJANGO_SERVICES:
        service = _services()[name]
        targets = {v.split(":")[1] if isinstance(v, str) else v["target"] for v in service["volumes"]}
        assert service["read_only"] is True and image_env["HOME"] in service["tmpfs"]  # HOME is /tmp
        assert {image_env["SOTTO_VAR_DIR"], image_env["SOTTO_AUDIT_CHECKPOINT_DIR"]} <= targets, name
    # one audit-checkpoint volume shared by all, so web reads what workers write
    audit = {
        v
        for name in COMPOSE_DJANGO_SERVICES
        for v in _services()[name]["volumes"]
        if isinstance(v, str) and v.endswith(":" + image_env["SOTTO_AUDIT_CHECKPOINT_DIR"])
    }
    assert len(audit) == 1


def test_there_is_one_worker_per_queue_the_settings_route_to():
    workers = {
        name: s["command"]
        for name, s in _services().items()
        if s.get("command", [])[:4] == ["celery", "-A", "config", "worker"]
    }
    queues = {option(command, "-Q") for command in workers.values()}

    assert queues == django_queues()
    for name, command in workers.items():
        queue = option(command, "-Q")
        assert name == f"worker-{queue}"
        assert option(command, "-n") == f"{queue}@%h"
        assert f"-d {queue}@$HOSTNAME " in _services()[name]["healthcheck"]["test"][1]


def test_the_commands_name_real_modules():
    from celery import Celery

    config = importlib.import_module("config")
    assert isinstance(config.celery_app, Celery)  # `celery -A config`
    web = _services()["web"]["command"]
    module, _, attribute = web[1].partition(":")
    assert web[0] == "gunicorn" and callable(getattr(importlib.import_module(module), attribute))
    assert (DEPLOY.parent / option(web, "--pythonpath")).is_dir()  # type: ignore[operator]
    assert _services()["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    migrate = _services()["migrate"]["command"][-1]
    assert (
        "manage.py check --deploy --fail-level WARNING &&" in migrate
        and "manage.py migrate --noinput" in migrate
    )


def test_long_running_services_have_health_checks_and_the_web_one_hits_a_real_url():
    # Nothing waits on the TLS proxy, so it alone goes without one.
    for name, service in _services().items():
        if service.get("restart") != "no" and name != "proxy":
            assert "healthcheck" in service, name
    probe = _services()["web"]["healthcheck"]["test"][-1]
    match = re.search(r"http://127\.0\.0\.1:8000(/[^']+)'.*'Host': '([^']+)'", probe)
    assert match is not None, probe
    assert resolve(match.group(1)).url_name == "health-ready"
    allowed = _services()["web"]["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert match.group(2) in allowed


def test_the_start_order_is_secrets_then_database_then_migrate_then_the_rest():
    services = _services()
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
    assert services["db"]["depends_on"]["secrets"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["depends_on"]["db"]["condition"] == "service_healthy"
    for name in set(COMPOSE_DJANGO_SERVICES) - {"migrate"}:
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_postgres_is_the_pgvector_image_initialised_by_our_script_with_file_secrets():
    db = _services()["db"]
    targets = {
        (v.split(":")[0] if isinstance(v, str) else v["source"]): (
            v.split(":")[1] if isinstance(v, str) else v["target"]
        )
        for v in db["volumes"]
    }

    assert db["image"] == "pgvector/pgvector:pg18"
    assert targets["pgdata"] == "/var/lib/postgresql"  # PostgreSQL 18 images: the parent of PGDATA
    assert targets["./postgres/initdb"] == "/docker-entrypoint-initdb.d"
    assert any(p.name.endswith(".sh") for p in (DEPLOY / "postgres" / "initdb").iterdir())
    assert db["environment"]["POSTGRES_PASSWORD_FILE"] in _secret_files(db)
    assert _secret_mounts(db) == {"/run/secrets/sotto": "db"}


def test_redis_reads_its_generated_configuration():
    redis = _services()["redis"]
    (config,) = redis["command"]
    assert config in _secret_files(redis)
    assert "/run/secrets/sotto/password" in redis["healthcheck"]["test"][1]


def test_the_secrets_service_runs_the_script_that_defines_the_layout():
    service = _services()["secrets"]
    script = next(v for v in service["volumes"] if v.startswith("./secrets_init.py:"))
    _, target, mode = script.split(":")
    assert mode == "ro" and service["command"][:2] == ["python", target]
    assert service["network_mode"] == "none"
    # every folder the other services mount is one the script creates
    mounted = {folder for s in _services().values() for folder in _secret_mounts(s).values()}
    assert mounted == set(secrets_init().LAYOUT)


def test_every_named_volume_is_declared_and_the_proxy_fronts_web_over_tls():
    declared = set(compose()["volumes"])
    for service in _services().values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if not source.startswith("."):
                assert source in declared, source
    proxy = _services()["proxy"]["command"]
    assert option(proxy, "--to") == "web:8000"
    host = option(proxy, "--from")
    assert host in _services()["web"]["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")


def test_compose_variables_resolve_to_their_defaults_and_to_overrides():
    text = (DEPLOY / "compose.yaml").read_text()
    assert "${SOTTO_HOST:-localhost}" in text
    assert interpolate("${SOTTO_HOST:-localhost}", {"SOTTO_HOST": "sotto.example.com"}) == "sotto.example.com"
    assert PurePosixPath(_services()["web"]["environment"]["DJANGO_SECRET_KEY_FILE"]).parent == PurePosixPath(
        "/run/secrets/sotto"
    )


def test_worker_and_beat_health_checks_are_the_kubernetes_probes_that_tests_run():
    from tests.deploy.manifests import k8s_one, pod_spec

    def probe(deployment: str) -> list[str]:
        command: list[str] = pod_spec(k8s_one("Deployment", deployment))["containers"][0]["livenessProbe"][
            "exec"
        ]["command"]
        return command

    for queue in django_queues():
        check = _services()[f"worker-{queue}"]["healthcheck"]["test"]
        assert check[0] == "CMD-SHELL" and ["sh", "-c", check[1]] == probe(f"sotto-worker-{queue}")
    assert _services()["beat"]["healthcheck"]["test"] == ["CMD", *probe("sotto-beat")]


def test_compose_runs_the_same_worker_and_beat_commands_as_kubernetes():
    from tests.deploy.manifests import k8s_one, pod_spec

    def command(kind: str, name: str) -> list[str]:
        argv: list[str] = pod_spec(k8s_one(kind, name))["containers"][0]["command"]
        return argv

    for queue in django_queues():
        assert _services()[f"worker-{queue}"]["command"] == command("Deployment", f"sotto-worker-{queue}")
    assert _services()["beat"]["command"] == command("Deployment", "sotto-beat")
    assert _services()["migrate"]["command"] == command("Job", "sotto-migrate")

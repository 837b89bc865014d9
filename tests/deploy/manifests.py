"""Readers for the deployment files, shared by tests/deploy: no Docker or cluster, just parsing."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PRODUCTION_SETTINGS = ROOT / "platform" / "config" / "settings" / "production.py"
#: Compose services and Kubernetes workloads that run Django (everything built from our image).
COMPOSE_DJANGO_SERVICES = ("migrate", "web", "worker-encode", "worker-train", "worker-default", "beat")


def _tuple_constant(path: Path, name: str) -> tuple[str, ...]:
    """A module-level ``NAME = ("a", "b")`` read without importing the module."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            assert isinstance(value, tuple), f"{name} in {path} is not a tuple"
            return value
    raise AssertionError(f"{path} defines no {name}")


def required_env() -> tuple[str, ...]:
    """What config.settings.production refuses to start without (importing it would enforce it here)."""
    return _tuple_constant(PRODUCTION_SETTINGS, "REQUIRED_ENV")


def plain_env() -> tuple[str, ...]:
    return _tuple_constant(PRODUCTION_SETTINGS, "PLAIN_ENV")


def secrets_init() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sotto_deploy_secrets_init", DEPLOY / "secrets_init.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::-(?P<default>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose's ``${NAME:-default}`` interpolation (from ``env``, else the default) and ``$$`` → ``$``."""
    env = env or {}
    text = _INTERPOLATION.sub(lambda m: env.get(m["name"]) or m["default"] or "", text)
    return text.replace("$$", "$")


@cache
def compose() -> dict[str, Any]:
    data = yaml.safe_load(interpolate((DEPLOY / "compose.yaml").read_text()))
    assert isinstance(data, dict)
    return data


@cache
def k8s_documents() -> tuple[dict[str, Any], ...]:
    """Every object the kustomization applies, in its order."""
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        docs.extend(d for d in yaml.safe_load_all((DEPLOY / "k8s" / resource).read_text()) if d)
    return tuple(docs)


def k8s(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_documents() if d["kind"] == kind]


def k8s_one(kind: str, name: str) -> dict[str, Any]:
    matches = [d for d in k8s(kind) if d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def k8s_django_workloads() -> list[dict[str, Any]]:
    """Deployments and Jobs whose pods run the Sotto image."""
    return [d for d in k8s_documents() if d["kind"] in {"Deployment", "Job"}]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def k8s_container_env(container: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment: ConfigMap envFrom, then env (None for valueFrom entries)."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        assert ref is not None, f"only ConfigMap envFrom is expected, got {source}"
        env.update(k8s_one("ConfigMap", ref["name"])["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def k8s_files(workload: dict[str, Any], container: dict[str, Any]) -> set[str]:
    """Paths of the files that the pod's Secret volumes put in this container."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    files: set[str] = set()
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        assert "items" in secret, f"{workload['metadata']['name']}: list the Secret's keys (items)"
        files.update(f"{mount['mountPath']}/{item['path']}" for item in secret["items"])
    return files


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for arg in self.args("ENV"):
            for token in shlex.split(arg):
                key, _, value = token.partition("=")
                values[key] = value
        return values


def dockerfile_stages(path: Path = DEPLOY / "Dockerfile") -> list[Stage]:
    """Instructions per stage, with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in global_args.items():
                base = base.replace("${" + name + "}", value)
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name=name, base=base))
        elif not stages:
            assert keyword == "ARG", f"only ARG may precede FROM, got {keyword}"
            key, _, value = rest.partition("=")
            global_args[key] = value.strip('"')
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return stages


def django_queues() -> set[str]:
    """The queue names the settings route to, without the per-session test prefix."""
    from django.conf import settings

    prefix = settings.SOTTO["QUEUE_PREFIX"]
    names = {
        settings.CELERY_TASK_DEFAULT_QUEUE,
        *(route["queue"] for route in settings.CELERY_TASK_ROUTES.values()),
    }
    assert all(name.startswith(prefix) for name in names)
    return {name[len(prefix) :] for name in names}


def option(command: list[str], flag: str) -> str | None:
    """The value after ``flag`` in an argv list (``-Q encode`` → ``encode``)."""
    if flag in command:
        index = command.index(flag)
        return command[index + 1] if index + 1 < len(command) else None
    return None


def clean_env() -> dict[str, str]:
    """A minimal environment for subprocesses: nothing of the test session's configuration leaks in."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{ROOT / 'platform'}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def database_url_from_settings() -> str:
    """This session's (migrated) test database as a DATABASE_URL; a socket directory goes in ``?host=``."""
    from urllib.parse import quote

    from django.db import connections

    db = connections["default"].settings_dict
    auth = quote(db["USER"], safe="") + (":" + quote(db["PASSWORD"], safe="") if db["PASSWORD"] else "")
    host, port, name = str(db["HOST"]), str(db["PORT"] or 5432), quote(db["NAME"], safe="")
    if host.startswith("/"):
        return f"postgresql://{auth}@/{name}?host={quote(host, safe='')}&port={port}"
    return f"postgresql://{auth}@{host}:{port}/{name}"


def run_manage(args: list[str], env: dict[str, str], timeout: float = 120) -> Any:
    import subprocess

    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )

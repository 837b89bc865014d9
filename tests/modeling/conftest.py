"""Modeling test fixtures: a trained tenant per module, the pointer cache off, a separate worker.

Torch runs single-threaded in tests (``MODELING_TORCH_THREADS`` defaults to 1; the ML core tests
set it themselves).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import TenantPersona, make_tenant

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_modeling_caches(settings: Any) -> Iterator[None]:
    """No cross-test caching of pointers or weights: every test reads what the database says."""
    from apps.modeling import artifacts, selectors

    settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 0.0}
    selectors.clear_pointer_cache()
    artifacts.clear_cache()
    yield
    selectors.clear_pointer_cache()
    artifacts.clear_cache()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record training tasks instead of sending them (what would have been queued, after commit)."""
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(
        "apps.modeling.services._enqueue", lambda tenant_id, run_id: sent.append((tenant_id, run_id))
    )
    return sent


def trained_persona(django_db_blocker: Any, **modeling: Any) -> TenantPersona:
    """A seeded tenant (30 items, 40 users, planted clusters) with one succeeded run (model v1)."""
    from apps.modeling import services, training
    from tests.modeling.support import seed_tenant, set_modeling

    with django_db_blocker.unblock():
        persona = make_tenant("m")
        seed_tenant(persona)
        set_modeling(persona, seed=7, **modeling)
        sent: list[int] = []
        original = services._enqueue
        services._enqueue = lambda tenant_id, run_id: sent.append(run_id)  # type: ignore[assignment]
        try:
            run = services.training_run_start(tenant_id=persona.tenant.id, epsilon=4.0, actor="test")
        finally:
            services._enqueue = original  # type: ignore[assignment]
        outcome = training.training_run_execute(tenant_id=persona.tenant.id, run_id=run["id"])
        assert outcome == "succeeded", outcome
    return persona


def worker_env(**extra: str) -> dict[str, str]:
    from django.conf import settings

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.test",
            "SOTTO_DB_NAME": settings.DATABASES["default"]["NAME"],
            "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}",
            "HF_HUB_OFFLINE": "1",
            **extra,
        }
    )
    return env


def start_worker(queue: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """A real ``celery worker`` (solo pool) consuming only ``queue``; waits until it is ready."""
    handle = log.open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queue,
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{queue}@%h",
        ],
        cwd=ROOT,
        env=worker_env(**env),
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while b"ready." not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"celery worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    return proc

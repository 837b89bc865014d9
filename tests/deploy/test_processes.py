"""The deployed commands, run for real with config.settings.production against the test database:
the web command and its probes, a worker command and its liveness probe, beat and its probe.

Commands and probes are read from deploy/k8s (the compose and Dockerfile copies are checked equal
to them elsewhere); only addresses, ports, queue prefix and the writable directory are rewritten.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.manifests import ROOT, k8s_one, option, pod_spec, run_manage
from tests.support import free_port

BIN = Path(sys.executable).parent


def _container(deployment: str) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec(k8s_one("Deployment", deployment))["containers"]
    assert len(containers) == 1
    return containers[0]


def _python_entry(command: list[str]) -> list[str]:
    """`gunicorn ...` / `celery ...` as this interpreter's module, so the venv's copy runs."""
    assert command[0] in {"gunicorn", "celery"}
    return [sys.executable, "-m", command[0], *command[1:]]


def _replace(command: list[str], flag: str, value: str) -> list[str]:
    index = command.index(flag)
    return [*command[: index + 1], value, *command[index + 2 :]]


@contextmanager
def _running(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as handle:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_for_log(proc: subprocess.Popen[bytes], log: Path, needle: bytes, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while needle not in log.read_bytes():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{needle!r} never appeared:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_the_web_command_answers_probes_over_http_and_serves_everything_else_over_https(
    production_env, tmp_path
):
    # Given static files collected as the image build does, and the k8s web command on a free port
    collected = run_manage(["collectstatic", "--noinput"], production_env)
    assert collected.returncode == 0, collected.stderr[-2000:]
    assert (Path(production_env["SOTTO_STATIC_ROOT"]) / "admin" / "css" / "base.css").is_file()
    container = _container("sotto-web")
    port = free_port()
    command = _replace(_python_entry(container["command"]), "--bind", f"127.0.0.1:{port}")
    command = _replace(_replace(command, "--workers", "1"), "--threads", "2")
    probe_host = {h["name"]: h["value"] for h in container["readinessProbe"]["httpGet"]["httpHeaders"]}

    with _running(command, production_env, tmp_path / "gunicorn.log") as proc:
        deadline = time.monotonic() + 120
        while True:
            try:
                status, _, _ = _get(port, container["livenessProbe"]["httpGet"]["path"], probe_host)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        # Then the probes answer over plain HTTP with the probe's Host header (no redirect)
        assert status == 200
        status, _, body = _get(port, container["readinessProbe"]["httpGet"]["path"], probe_host)
        assert status == 200, body
        assert json.loads(body)["checks"] == {"database": "ok", "broker": "ok"}
        # and everything else over plain HTTP is redirected to HTTPS
        status, headers, _ = _get(port, "/api/schema/", {"Host": "sotto.example.com"})
        assert (status, headers["location"]) == (301, "https://sotto.example.com/api/schema/")
        # and over HTTPS (the proxy's X-Forwarded-Proto) pages come with HSTS and __Host- secure cookies
        https = {"Host": "sotto.example.com", "X-Forwarded-Proto": "https"}
        status, headers, body = _get(port, "/admin/login/", https)
        assert status == 200
        assert headers["strict-transport-security"] == "max-age=31536000; includeSubDomains; preload"
        cookie = headers["set-cookie"]
        assert cookie.startswith("__Host-csrftoken=") and "Secure" in cookie and "HttpOnly" in cookie
        # and static files are the collected ones, served by the web process itself
        stylesheet = re.search(rb'href="(/static/admin/css/base\.css)"', body)
        assert stylesheet is not None, body[:2000]
        status, headers, _ = _get(port, stylesheet.group(1).decode(), https)
        assert status == 200 and headers["content-type"].startswith("text/css")
        # and a Host that is not allowed is refused
        assert _get(port, "/health/live", {"Host": "evil.example.net"})[0] == 400
        # and Prometheus can scrape the pod directly (its IP as Host, plain HTTP) with the metrics token
        token = Path(production_env["SOTTO_METRICS_TOKEN_FILE"]).read_text().strip()
        status, _, body = _get(
            port, "/metrics", {"Host": "10.1.2.3:8000", "Authorization": f"Bearer {token}"}
        )
        assert status == 200, body[:500]


def _broker_is_redis() -> bool:
    from django.conf import settings

    return str(settings.CELERY_BROKER_URL).startswith("redis")


@pytest.mark.skipif(
    not _broker_is_redis(), reason="`celery inspect ping` needs a broadcast-capable broker (Redis: CI)"
)
def test_the_encode_worker_command_passes_its_own_liveness_probe(production_env, tmp_path):
    # Given the k8s encode worker, on a queue of its own (the prefix keeps it off real queues)
    container = _container("sotto-worker-encode")
    prefix = f"deploy{uuid.uuid4().hex[:8]}."
    command = _python_entry(container["command"])
    command = _replace(command, "-Q", prefix + option(command, "-Q"))  # type: ignore[operator]
    env = {
        **production_env,
        "SOTTO_QUEUE_PREFIX": prefix,
        "HOSTNAME": socket.gethostname(),
        "PATH": f"{BIN}{os.pathsep}{production_env['PATH']}",
    }
    probe = container["livenessProbe"]["exec"]["command"]

    with _running(command, env, tmp_path / "worker.log") as proc:
        _wait_for_log(proc, tmp_path / "worker.log", b"ready.")
        # When the probe runs in the pod's environment, Then the worker answers it
        result = subprocess.run(
            probe, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr
        # and a probe for another node name fails (so it is this worker that answered)
        other = [part.replace("@$HOSTNAME", "@not-this-host") for part in probe]
        other = [part.replace("--timeout 10", "--timeout 2") for part in other]
        result = subprocess.run(
            other, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode != 0


def test_beat_writes_the_schedule_file_its_probe_watches(production_env, tmp_path):
    # Given the k8s beat command and probe, with /var/lib/sotto moved to this test's directory
    container = _container("sotto-beat")
    var = production_env["SOTTO_VAR_DIR"]
    Path(var).mkdir(parents=True, exist_ok=True)
    command = [part.replace("/var/lib/sotto", var) for part in _python_entry(container["command"])]
    probe = [part.replace("/var/lib/sotto", var) for part in container["livenessProbe"]["exec"]["command"]]
    probe[0] = sys.executable if probe[0] == "python" else probe[0]
    env = {**production_env, "SOTTO_QUEUE_PREFIX": f"deploy{uuid.uuid4().hex[:8]}."}
    assert subprocess.run(probe, env=env, check=False, timeout=60).returncode != 0  # no file yet: unhealthy

    with _running(command, env, tmp_path / "beat.log") as proc:
        _wait_for_log(proc, tmp_path / "beat.log", b"beat: Starting")
        deadline = time.monotonic() + 60
        while not list(Path(var).glob("celerybeat-schedule*")):
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "beat.log").read_text()[
                -3000:
            ]
            time.sleep(0.2)
        # Then the probe passes while the file is fresh
        assert subprocess.run(probe, env=env, check=False, timeout=60).returncode == 0
    # and fails once it is older than the probe allows (a hung beat)
    for path in Path(var).glob("celerybeat-schedule*"):
        old = time.time() - 3600
        os.utime(path, (old, old))
    assert subprocess.run(probe, env=env, check=False, timeout=60).returncode != 0

"""The demo's process supervisor (apps/demo/processes.py) leaves no process behind.

Each test runs a real supervisor in a process of its own (what ``manage.py demo`` is), signals it
as a terminal or ``make stop`` would, and then looks for every pid that ran under it, forked
grandchildren included. Stand-in children keep most tests to a few seconds; the last one runs the
demo's real gunicorn, Celery worker and beat.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from apps.demo.processes import STATE_FILE, demo_commands, group_members, pid_alive, stop_recorded
from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]

# The supervisor under test: starts the given commands, says so, and waits (as `manage.py demo` does
# after printing its credentials). Ctrl-C ends it with 130; SIGTERM with Terminated's 143.
SUPERVISOR = """
import json, os, sys
from pathlib import Path
from apps.demo.processes import Supervisor
spec = json.loads(sys.argv[1])
try:
    with Supervisor(state_file=Path(spec["state"]), grace_s=spec["grace"]) as supervisor:
        for name, command in spec["commands"].items():
            supervisor.start(name, command, cwd=Path(spec["cwd"]), env=os.environ, log=Path(spec["logs"]) / f"{name}.log")
        print("started", flush=True)
        supervisor.wait()
except KeyboardInterrupt:
    sys.exit(130)
"""

PY = sys.executable
# gunicorn-like: a parent and the worker it forked, in one process group
FORKING = [PY, "-c", "import os, time; os.fork(); time.sleep(600)"]
# a child that shrugs off SIGTERM: only SIGKILL ends it
STUBBORN = [
    PY,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(600)",
]
SLEEPER = ["sleep", "600"]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}", **extra}


@pytest.fixture(autouse=True)
def _reap_leftovers(tmp_path: Path) -> Iterator[None]:
    """Whatever a failing test leaves running is killed here, so one failure does not leak sleepers."""
    yield
    seen = tmp_path / "children.json"  # written by _everyone (the supervisor deletes its state file)
    if seen.exists():
        for leader in json.loads(seen.read_text()):
            for pid in group_members(leader):
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _supervise(
    tmp_path: Path, commands: dict[str, list[str]], *, grace: float = 1.0, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    spec = {
        "state": str(tmp_path / STATE_FILE),
        "grace": grace,
        "cwd": str(ROOT),
        "logs": str(tmp_path / "log"),
        "commands": commands,
    }
    proc = subprocess.Popen(
        [PY, "-c", SUPERVISOR, json.dumps(spec)],
        cwd=ROOT,
        env=env or _env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "started", line + proc.stdout.read()
    return proc


def _state(tmp_path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((tmp_path / STATE_FILE).read_text())
    return result


def _wait_for(predicate: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, message
        time.sleep(0.05)


def _everyone(tmp_path: Path, expected: dict[str, int]) -> list[int]:
    """Every pid under the supervisor once each group has its expected size (grandchildren included)."""
    children = {c["name"]: c["pid"] for c in _state(tmp_path)["children"]}
    (tmp_path / "children.json").write_text(json.dumps(list(children.values())))
    for name, size in expected.items():
        _wait_for(
            lambda n=name, s=size: len(group_members(children[n])) >= s,
            10,
            f"{name} never had {size} processes",
        )
    pids = [pid for leader in children.values() for pid in group_members(leader)]
    assert len(pids) == sum(expected.values())
    return pids


def _stubborn_ready(tmp_path: Path) -> None:
    _wait_for(
        lambda: b"ready" in (tmp_path / "log" / "worker.log").read_bytes(),
        10,
        "the stubborn child never started",
    )


def _none_alive(pids: list[int], timeout: float = 10.0) -> None:
    _wait_for(
        lambda: not [p for p in pids if pid_alive(p)],
        timeout,
        f"still running: {[p for p in pids if pid_alive(p)]}",
    )


def test_sigterm_of_the_demo_stops_every_child_grandchildren_and_stubborn_ones_included(tmp_path):
    # Given a supervisor running a forking child, one that ignores SIGTERM and a plain one
    proc = _supervise(tmp_path, {"web": FORKING, "worker": STUBBORN, "beat": SLEEPER})
    _stubborn_ready(tmp_path)
    pids = _everyone(tmp_path, {"web": 2, "worker": 1, "beat": 1})

    # When it gets SIGTERM (what `make` forwards, and what `make stop` sends)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)

    # Then it exits with 128+15 after stopping all four processes: the stubborn one after the grace period
    assert proc.wait(30) == 143
    assert time.monotonic() - started >= 1.0
    _none_alive(pids, timeout=1.0)
    assert not (tmp_path / STATE_FILE).exists()


def test_ctrl_c_of_the_demo_stops_every_child(tmp_path):
    # Given a supervisor whose children are in sessions of their own (so a terminal's Ctrl-C reaches only it)
    proc = _supervise(tmp_path, {"web": FORKING, "beat": SLEEPER})
    pids = _everyone(tmp_path, {"web": 2, "beat": 1})
    children = {c["pid"] for c in _state(tmp_path)["children"]}
    assert all(os.getsid(pid) == pid for pid in children)

    # When it gets SIGINT, Then it stops them all and exits through KeyboardInterrupt
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 130
    _none_alive(pids, timeout=1.0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_sigkill_of_the_demo_still_stops_its_children_and_make_stop_clears_what_is_left(tmp_path):
    # Given a supervisor with a forking child, a stubborn one and a plain one
    proc = _supervise(tmp_path, {"web": FORKING, "worker": STUBBORN, "beat": SLEEPER})
    _stubborn_ready(tmp_path)
    children = {c["name"]: c["pid"] for c in _state(tmp_path)["children"]}
    pids = _everyone(tmp_path, {"web": 2, "worker": 1, "beat": 1})

    # When it is SIGKILLed (it can run no code), Then the kernel's SIGTERM (PDEATHSIG) ends the direct children
    proc.kill()
    proc.wait(10)
    _none_alive([children["web"], children["beat"]])
    # but neither the stubborn one nor the forked grandchild, which the kernel does not signal
    assert pid_alive(children["worker"]) and len([p for p in pids if pid_alive(p)]) == 2

    # When `make stop` runs, Then it finds both groups from the state file and ends them
    said: list[str] = []
    assert stop_recorded(tmp_path, grace_s=1.0, say=said.append) == 2
    _none_alive(pids, timeout=2.0)
    assert any("killed" in line for line in said), said
    assert not (tmp_path / STATE_FILE).exists()


def test_make_stop_asks_a_running_demo_to_stop_and_leaves_a_reused_pid_alone(tmp_path):
    # Given a running supervisor
    proc = _supervise(tmp_path, {"web": FORKING, "beat": SLEEPER})
    pids = _everyone(tmp_path, {"web": 2, "beat": 1})

    # When `make stop` runs, Then the supervisor itself stops its children and exits
    said: list[str] = []
    assert stop_recorded(tmp_path, grace_s=5.0, say=said.append) == 1
    assert proc.wait(10) == 143
    _none_alive(pids, timeout=1.0)
    assert stop_recorded(tmp_path, say=said.append) == 0 and "nothing to stop" in said[-1]

    # and a state file naming a live pid with another start time (the pid was reused) stops nothing
    bystander = subprocess.Popen(SLEEPER, start_new_session=True)
    try:
        state = {
            "supervisor": {"pid": bystander.pid, "started": "1"},
            "children": [{"name": "web", "pid": bystander.pid, "started": "1", "log": None}],
        }
        (tmp_path / STATE_FILE).write_text(json.dumps(state))
        assert stop_recorded(tmp_path, grace_s=1.0, say=said.append) == 0
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_the_demo_admin_password_is_generated_once_and_kept_private(tmp_path):
    from apps.demo.management.commands.demo import demo_admin_password

    old = os.umask(0)  # even with a permissive umask
    try:
        password, path = demo_admin_password(tmp_path)
    finally:
        os.umask(old)
    assert len(password) >= 20 and stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert demo_admin_password(tmp_path) == (password, path)  # the same install keeps its password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    other = tmp_path / "other"
    other.mkdir()
    assert demo_admin_password(other)[0] != password


def _live(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as answer:
            return bool(answer.status == 200)
    except OSError:
        return False


@pytest.mark.slow
def test_sigterm_stops_the_demos_real_gunicorn_worker_and_beat(tmp_path, live_db, settings):
    # Given the demo's own web, worker and beat command lines on this session's test database
    # (a queue prefix of their own, so this worker takes no other test's tasks)
    port = free_port()
    prefix = f"demo{uuid.uuid4().hex[:8]}."
    commands = demo_commands(
        python=PY,
        platform_dir=ROOT / "platform",
        var_dir=tmp_path,
        queue_prefix=prefix,
        host="127.0.0.1",
        port=port,
    )
    env = _env(
        DJANGO_SETTINGS_MODULE="config.settings.test",
        SOTTO_DB_NAME=settings.DATABASES["default"]["NAME"],
        SOTTO_QUEUE_PREFIX=prefix,
        HF_HUB_OFFLINE="1",
    )
    proc = _supervise(tmp_path, commands, grace=15.0, env=env)
    logs = tmp_path / "log"
    try:
        _wait_for(
            lambda: _live(port), 120, f"gunicorn never answered:\n{(logs / 'web.log').read_text()[-3000:]}"
        )
        _wait_for(
            lambda: b"ready." in (logs / "worker.log").read_bytes(),
            120,
            f"the worker never got ready:\n{(logs / 'worker.log').read_text()[-3000:]}",
        )
        _wait_for(
            lambda: b"beat: Starting" in (logs / "beat.log").read_bytes(),
            60,
            f"beat never started:\n{(logs / 'beat.log').read_text()[-3000:]}",
        )
        # gunicorn's master and its two workers, the worker, beat
        pids = _everyone(tmp_path, {"web": 3, "worker": 1, "beat": 1})
    except BaseException:
        proc.kill()
        raise

    # When the demo gets SIGTERM, Then it exits and not one of those processes is left
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 143
    _none_alive(pids, timeout=1.0)
    assert not _live(port)

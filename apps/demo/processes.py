"""The demo's processes (web, worker, beat): started together, and never left behind.

Standard library only, no Django: ``make stop`` runs ``python -m apps.demo.processes stop``
from another terminal, and importing the settings would start the embedded PostgreSQL just to
stop it.

What ``Supervisor`` guarantees, and how:

- **One signal reaches a whole child.** Each child runs in its own session (process group), so
  stopping it signals everything it forked (gunicorn's workers, a Celery pool) at once, and a
  Ctrl-C in the terminal reaches only the supervisor, which then stops the children itself.
- **Every way out stops the children.** SIGTERM and SIGHUP raise :class:`Terminated` (a
  ``SystemExit``), Ctrl-C raises ``KeyboardInterrupt``; both unwind to ``Supervisor.stop`` (the
  ``with`` block's exit), and ``atexit`` covers any other normal exit. ``stop`` sends SIGTERM to
  each group, waits ``grace_s``, then SIGKILLs whatever is left; a second signal meanwhile skips
  the wait.
- **Even SIGKILL of the supervisor** (which runs no code) stops them on Linux: each child starts
  with ``PR_SET_PDEATHSIG`` = SIGTERM, so the kernel signals it when the supervisor dies.
- **Another terminal can stop them**: every pid goes to a state file (``var/run/demo.json``)
  that :func:`stop_recorded` reads; a recorded pid that now belongs to another process (same
  number, other start time) is left alone.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

STATE_FILE = Path("run") / "demo.json"  # under the var dir
PR_SET_PDEATHSIG = 1
_PROC = Path("/proc")


class Terminated(SystemExit):
    """SIGTERM or SIGHUP arrived: unwinds like ``sys.exit(128 + signum)``, so ``finally`` blocks run."""

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum


# --- processes by pid and group ------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...), or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw.rsplit(")", 1)[1].split()


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): with the pid, it names one process."""
    fields = _stat(pid)
    return fields[19] if fields else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    if _PROC.is_dir():
        fields = _stat(pid)
        return fields is not None and fields[0] not in {"Z", "X"}
    from config.embedded_pg import pid_exists  # stdlib only: no Django, no server started

    return pid_exists(pid)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    if not _PROC.is_dir():  # pragma: no cover - Linux has /proc; elsewhere ask the kernel about the group
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[2] == str(pgid) and fields[0] not in {"Z", "X"}:
                members.append(int(entry.name))
    return members


def _raise_for(signum: int) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Terminated(signum)


def _same_process(pid: int, started: str | None) -> bool:
    if not pid_alive(pid):
        return False
    return started is None or start_time(pid) in (None, started)


def _signal_group(pgid: int, sig: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to SIGTERM the child when ``parent`` dies (Linux), else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before fork: the child only calls it
    except (OSError, AttributeError):  # pragma: no cover - every Linux libc has prctl
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(0)

    return preexec


# --- the supervisor ------------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path | None
    started: str | None

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Starts the demo's processes and stops every one of them, whatever ends the demo.

    Use as a context manager in the main thread: entering installs the SIGTERM/SIGHUP handlers
    (and an ``atexit`` hook), leaving stops the children and restores the handlers.
    """

    def __init__(self, *, state_file: Path | None = None, grace_s: float = 15.0) -> None:
        self.state_file = state_file
        self.grace_s = grace_s
        self.children: list[Child] = []
        self._hurry = False
        self._stopped = False
        self._previous: dict[int, Any] = {}
        self._starting = False  # a signal now is held until the new child is recorded
        self._pending: int | None = None

    def __enter__(self) -> Supervisor:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._previous[signum] = signal.signal(signum, self._on_signal)
        atexit.register(self.stop)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.stop()
        finally:
            atexit.unregister(self.stop)
            self._restore_handlers()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._starting:
            self._pending = signum  # raised once the child being started is recorded (see start)
            return
        _raise_for(signum)

    def _restore_handlers(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous.clear()

    def start(
        self, name: str, command: list[str], *, cwd: Path, env: Mapping[str, str], log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``command`` in a process group of its own, output to ``log`` (else this terminal)."""
        if self._stopped:
            raise RuntimeError("the supervisor has stopped")
        handle = None
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            handle = log.open("ab")
        # A signal between the fork and the bookkeeping would leave an untracked child: hold it.
        self._starting = True
        try:
            # preexec_fn only calls prctl, resolved before the fork (no import, no lock in the child)
            proc = subprocess.Popen(  # noqa: S603 - our own command lines, no shell
                command,
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT if handle else None,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
            self.children.append(Child(name=name, proc=proc, log=log, started=start_time(proc.pid)))
            self._write_state()
        finally:
            self._starting = False
            if handle is not None:
                handle.close()
        if self._pending is not None:
            signum, self._pending = self._pending, None
            _raise_for(signum)
        return proc

    def exited(self) -> Child | None:
        """A child that has exited (the first one found), or None while all run."""
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def wait(self, interval: float = 0.5) -> Child:
        """Block until a child exits and return it (signals interrupt the wait, as above)."""
        while True:
            child = self.exited()
            if child is not None:
                return child
            time.sleep(interval)

    def stop(self) -> None:
        """SIGTERM every child's group (last started first), SIGKILL what remains after ``grace_s``. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if threading.current_thread() is threading.main_thread():
            # a second Ctrl-C or SIGTERM while stopping means "now": skip the grace period
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous = signal.signal(signum, self._hurry_up)
                self._previous.setdefault(signum, previous)
        for child in reversed(self.children):
            child.proc.poll()
            if group_members(child.pid):
                _signal_group(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        while not self._hurry and time.monotonic() < deadline and self._any_left():
            time.sleep(0.1)
        for child in self.children:
            if group_members(child.pid):
                _signal_group(child.pid, signal.SIGKILL)
        for child in self.children:
            with suppress(subprocess.TimeoutExpired):
                child.proc.wait(10)
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)

    def _hurry_up(self, signum: int, frame: FrameType | None) -> None:
        self._hurry = True

    def _any_left(self) -> bool:
        for child in self.children:
            child.proc.poll()  # reaps an exited leader, so it no longer counts as a member
        return any(group_members(child.pid) for child in self.children)

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        state = {
            "supervisor": {"pid": os.getpid(), "started": start_time(os.getpid())},
            "children": [
                {"name": c.name, "pid": c.pid, "started": c.started, "log": str(c.log) if c.log else None}
                for c in self.children
            ],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(self.state_file)


# --- the demo's command lines ----------------------------------------------------------------------


def demo_commands(
    *, python: str, platform_dir: Path, var_dir: Path, queue_prefix: str, host: str, port: int
) -> dict[str, list[str]]:
    """Web, worker and beat as the demo runs them (the Makefile's serve/worker/beat, sized for one machine)."""
    queues = ",".join(f"{queue_prefix}{q}" for q in ("default", "encode", "train"))
    return {
        "worker": [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "-Q",
            queues,
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "-n",
            "demo@%h",
        ],
        # beat: audit checkpoints, SLO burn-rate alerts, retention, the stale-run reaper, scheduled retraining
        "beat": [
            python,
            "-m",
            "celery",
            "-A",
            "config",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(var_dir / "celerybeat-schedule"),
        ],
        "web": [
            python,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--pythonpath",
            str(platform_dir),
            "--bind",
            f"{host}:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--graceful-timeout",
            "5",
            "--access-logfile",
            "-",
        ],
    }


# --- make stop ---------------------------------------------------------------------------------------


def _say(line: str) -> None:
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def stop_recorded(var_dir: Path, *, grace_s: float = 20.0, say: Callable[[str], None] = _say) -> int:
    """Stop the demo recorded under ``var_dir`` (its supervisor, then any child group left); how many were running."""
    path = var_dir / STATE_FILE
    try:
        state = json.loads(path.read_text())
    except FileNotFoundError:
        say(f"no demo processes recorded ({path}): nothing to stop")
        return 0
    except ValueError:
        say(f"{path} is unreadable; removing it")
        path.unlink(missing_ok=True)
        return 0
    running = 0
    supervisor = state.get("supervisor") or {}
    pid = int(supervisor.get("pid") or 0)
    if pid and _same_process(pid, supervisor.get("started")):
        running += 1
        say(f"stopping the demo (pid {pid}): it stops web, worker and beat")
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    children = state.get("children") or []
    left = []
    for child in children:
        leader, started = int(child["pid"]), child.get("started")
        if pid_alive(leader) and not _same_process(leader, started):
            continue  # that pid now names another process: not ours
        if group_members(leader):
            left.append(child)
    for child in left:
        running += 1
        say(f"stopping {child['name']} (process group {child['pid']})")
        _signal_group(int(child["pid"]), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(group_members(int(c["pid"])) for c in left):
        time.sleep(0.1)
    for child in left:
        if group_members(int(child["pid"])):
            say(f"{child['name']} did not stop in {grace_s:.0f} s: killed")
            _signal_group(int(child["pid"]), signal.SIGKILL)
    path.unlink(missing_ok=True)
    if not running:
        say("the recorded demo is no longer running (its record is removed)")
    return running


def main(argv: list[str] | None = None) -> int:
    """``stop [--var-dir DIR] [--keep-postgres]``: what ``make stop`` runs."""
    parser = argparse.ArgumentParser(prog="python -m apps.demo.processes")
    sub = parser.add_subparsers(dest="command", required=True)
    stop = sub.add_parser("stop", help="stop the demo's web, worker and beat, then the embedded PostgreSQL")
    stop.add_argument("--var-dir", type=Path, default=Path(os.environ.get("SOTTO_VAR_DIR") or "var"))
    stop.add_argument("--keep-postgres", action="store_true", help="leave the embedded PostgreSQL running")
    args = parser.parse_args(argv)

    stop_recorded(args.var_dir)
    if not args.keep_postgres:
        from config import embedded_pg  # platform/ is on PYTHONPATH (the Makefile exports it)

        if embedded_pg.is_running(args.var_dir):
            _say(f"stopping the embedded PostgreSQL ({args.var_dir / 'pgdata'})")
            embedded_pg.stop(args.var_dir)
        else:
            _say("the embedded PostgreSQL is not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())

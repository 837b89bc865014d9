"""``make demo``: set up the whole product on the embedded default, then run web, worker and beat.

Each step says what it is doing. Re-running is safe: the demo tenant is reused and a fresh API
key is issued (shown once, stored hashed). The admin's password is generated once per install and
kept in ``var/demo-admin-password`` (mode 0600), so it survives a lost terminal; the demo sets it
again on every run, so it keeps working after ``make clean-db``.

Web, worker and beat run under ``apps.demo.processes.Supervisor``: Ctrl-C, SIGTERM (``make
stop`` from another terminal sends it), or any error here stops all three, and nothing is left
running but the embedded PostgreSQL (``make stop`` stops that too).
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.core.conf import sotto
from apps.demo.processes import STATE_FILE, Child, Supervisor, Terminated, demo_commands
from apps.demo.steps import (
    client_check_step,
    curl_examples,
    default_dataset,
    python_examples,
    run_extra_steps,
)
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_get
from apps.tenancy.services import api_key_create, membership_set, tenant_create, tenant_update_settings

ROOT = Path(settings.BASE_DIR)
DEMO_SLUG = "demo"
ADMIN_USER = "demo-admin"
PASSWORD_FILE = "demo-admin-password"  # noqa: S105 # nosec B105 - a file name, not a password
DEMO_RETENTION_DAYS = 36500
WEB_START_TIMEOUT_S = 120.0


def demo_admin_password(var_dir: Path) -> tuple[str, Path]:
    """The demo admin's password: generated on first use, then read back from ``var_dir`` (mode 0600).

    Never a fixed password: each install has its own, and only its owner's account can read it.
    """
    path = var_dir / PASSWORD_FILE
    if path.is_file():
        path.chmod(0o600)  # tightened again if someone loosened it
        existing = path.read_text(encoding="utf-8").strip()
        if existing:
            return existing, path
    password = secrets.token_urlsafe(16)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")
    path.chmod(0o600)  # O_CREAT's mode is masked by the umask and ignored for an existing file
    return password, path


def _shown(path: Path) -> str:
    """A path as the user reads it: relative to the checkout when inside it (``var/log``)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT.resolve()) if resolved.is_relative_to(ROOT.resolve()) else resolved)


class Command(BaseCommand):
    help = "Set up a demo tenant with data, then run web (127.0.0.1:8000), worker and beat until Ctrl-C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up, print the credentials and exit")
        parser.add_argument(
            "--dataset",
            type=Path,
            default=None,
            help="a MovieLens-format folder (default data/ml-latest-small)",
        )

    def step(self, message: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {message}"))

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        host, port, serve = options["host"], options["port"], not options["no_serve"]
        var_dir = Path(settings.VAR_DIR)
        if serve:
            self._check_port_free(host, port)
        self.step("Demo tenant")
        tenant = tenant_get(slug=DEMO_SLUG) or tenant_create(slug=DEMO_SLUG, name="Demo shop", actor="demo")
        if tenant.settings.get("event_retention_days") != DEMO_RETENTION_DAYS:
            # MovieLens ratings date from 1996-2018: the default 365-day retention would delete them all.
            tenant = tenant_update_settings(
                tenant=tenant, changes={"event_retention_days": DEMO_RETENTION_DAYS}, actor="demo"
            )
        issued = api_key_create(tenant=tenant, name=f"demo {time.strftime('%Y-%m-%d %H:%M')}", actor="demo")

        self.step(f"Admin user {ADMIN_USER}: platform operator and owner of tenant {DEMO_SLUG}")
        password, password_file = demo_admin_password(var_dir)
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN_USER).first() or user_model(username=ADMIN_USER)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        membership_set(tenant=tenant, user=user, role="owner", actor="demo")

        dataset = options["dataset"] or default_dataset()
        commands = demo_commands(
            python=sys.executable,
            platform_dir=ROOT / "platform",
            var_dir=var_dir,
            queue_prefix=sotto().queue_prefix,
            host=host,
            port=port,
        )
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}", "HF_HUB_OFFLINE": "1"}
        logs = var_dir / "log"
        shown = _shown(logs)  # var/log when under the checkout, else the full path
        try:
            with Supervisor(state_file=var_dir / STATE_FILE) as supervisor:
                self.step(
                    f"Starting a Celery worker (queues default, encode, train); log: {shown}/worker.log"
                )
                supervisor.start("worker", commands["worker"], cwd=ROOT, env=env, log=logs / "worker.log")
                if serve:
                    self.step(
                        "Starting Celery beat (audit checkpoints, SLO alerts, retention, stale-run reaper, "
                        f"scheduled retraining); log: {shown}/beat.log"
                    )
                    supervisor.start("beat", commands["beat"], cwd=ROOT, env=env, log=logs / "beat.log")
                run_extra_steps(tenant=tenant, step=self.step, stdout=self.stdout, dataset=dataset)
                self.step(f"Setup finished in {time.monotonic() - started:.0f} s")
                base = f"http://{host}:{port}"
                if not serve:
                    self._print_credentials(tenant, issued.raw, password, password_file, base, serving=False)
                    return
                self.step(f"Starting the web server (gunicorn, 2 workers) on {base}; log: {shown}/web.log")
                supervisor.start("web", commands["web"], cwd=ROOT, env=env, log=logs / "web.log")
                self._wait_until_live(supervisor, base)
                client_check_step(
                    base=base, key=issued.raw, directory=dataset, step=self.step, stdout=self.stdout
                )
                self._print_credentials(tenant, issued.raw, password, password_file, base, serving=True)
                self.step("Running web, worker and beat: Ctrl-C here (or `make stop` elsewhere) stops them")
                child = supervisor.wait()
                raise CommandError(self._exited(child))
        except (KeyboardInterrupt, Terminated) as exc:
            how = "Ctrl-C" if isinstance(exc, KeyboardInterrupt) else signal.Signals(exc.signum).name
            self.stdout.write("")
            self.step(
                f"Stopped ({how}): web, worker and beat are down. The embedded PostgreSQL is not stopped "
                "here (`make stop` does that)"
            )

    def _check_port_free(self, host: str, port: int) -> None:
        """Fail in a second, not after minutes of setup, when something already listens on the port."""
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise CommandError(
                    f"{host}:{port} is in use ({exc.strerror}): is a demo already running? `make stop` stops it, "
                    "or pass --port"
                ) from None

    def _wait_until_live(self, supervisor: Supervisor, base: str) -> None:
        deadline = time.monotonic() + WEB_START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health/live", timeout=2) as answer:  # noqa: S310 # nosec B310 - our own http:// URL
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            child = supervisor.exited()
            if child is not None:
                raise CommandError(self._exited(child))
            if time.monotonic() > deadline:
                raise CommandError(
                    f"the web server did not answer {base}/health/live in {WEB_START_TIMEOUT_S:.0f} s; "
                    f"see {_shown(Path(settings.VAR_DIR) / 'log')}/web.log"
                )
            time.sleep(0.3)

    @staticmethod
    def _exited(child: Child) -> str:
        tail = ""
        if child.log is not None and child.log.is_file():
            tail = "\n" + "\n".join(child.log.read_text(errors="replace").splitlines()[-20:])
        return f"{child.name} exited with code {child.proc.returncode}; last lines of {child.log}:{tail}"

    def _print_credentials(
        self, tenant: Tenant, key: str, password: str, password_file: Path, base: str, *, serving: bool
    ) -> None:
        logs = _shown(Path(settings.VAR_DIR) / "log")
        lines = [
            "",
            self.style.SUCCESS(
                "Sotto demo is ready." if serving else "Sotto demo is set up (--no-serve: not serving)."
            ),
            f"  Web admin:  {base}/   sign in as {ADMIN_USER} / {password}",
            f"              (platform operator and owner of tenant {tenant.slug}; the password stays in {_shown(password_file)}, "
            "mode 0600)",
            f"  API key:    {key}   (tenant {tenant.slug}; shown once)",
            f"  API docs:   {base}/api/docs/   (guide: docs/api.md)",
        ]
        if serving:
            lines += [
                f"  Logs:       {logs}/web.log, {logs}/worker.log, {logs}/beat.log",
                "  Stop:       Ctrl-C here, or `make stop` from another terminal (it also stops the embedded "
                "PostgreSQL)",
            ]
        lines += [
            "",
            "  Try:",
            f'    curl -s {base}/api/v1/tenant -H "Authorization: Bearer {key}"',
            f"    curl -s -o /dev/null -w '%{{http_code}}\\n' {base}/api/v1/tenant   # 401 without a key",
            *(f"    {line}" for line in curl_examples(base=base, key=key)),
            "",
            "  From Python (clients/python, installed by `make install`; run .venv/bin/python):",
            *(f"    >>> {line}" for line in python_examples(base=base, key=key)),
            "",
        ]
        self.stdout.write("\n".join(lines))

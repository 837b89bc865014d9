"""``make demo``: set up the whole product on the embedded default, then serve on 127.0.0.1:8000.

Each step says what it is doing. Re-running is safe: the demo tenant is reused, a fresh API key
and admin password are issued (they are shown once and never stored in clear).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from apps.core.demo_steps import run_extra_steps
from apps.tenancy.models import Tenant
from apps.tenancy.selectors import tenant_get
from apps.tenancy.services import api_key_create, membership_set, tenant_create, tenant_update_settings

ROOT = Path(settings.BASE_DIR)
DEMO_SLUG = "demo"
ADMIN_USER = "demo-admin"
DEMO_RETENTION_DAYS = 36500


class Command(BaseCommand):
    help = "Set up a demo tenant with data, a worker and the web server on 127.0.0.1:8000."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-serve", action="store_true", help="set up, print the credentials and exit")
        parser.add_argument("--dataset", type=Path, default=None,
                            help="a MovieLens-format folder (default data/ml-latest-small)")

    def step(self, message: str) -> None:
        self.stdout.write(self.style.MIGRATE_HEADING(f"==> {message}"))

    def handle(self, *args: Any, **options: Any) -> None:
        started = time.monotonic()
        self.step("Demo tenant")
        tenant = tenant_get(slug=DEMO_SLUG) or tenant_create(slug=DEMO_SLUG, name="Demo shop", actor="demo")
        if tenant.settings.get("event_retention_days") != DEMO_RETENTION_DAYS:
            # MovieLens ratings date from 1996-2018: the default 365-day retention would delete them all.
            tenant = tenant_update_settings(
                tenant=tenant, changes={"event_retention_days": DEMO_RETENTION_DAYS}, actor="demo"
            )
        issued = api_key_create(tenant=tenant, name=f"demo {time.strftime('%Y-%m-%d %H:%M')}", actor="demo")

        self.step("Admin user")
        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN_USER).first() or user_model(username=ADMIN_USER)
        user.is_staff = True
        user.is_superuser = True
        user.set_password(password)
        user.save()
        membership_set(tenant=tenant, user=user, role="owner", actor="demo")

        worker = self._start_worker()
        try:
            run_extra_steps(tenant=tenant, step=self.step, stdout=self.stdout, dataset=options["dataset"])
            self.step(f"Setup finished in {time.monotonic() - started:.0f} s")
            self._print_credentials(tenant, issued.raw, password, options["host"], options["port"])
            if not options["no_serve"]:
                self._serve(options["host"], options["port"])
        finally:
            self._stop(worker)

    def _start_worker(self) -> subprocess.Popen[bytes]:
        self.step("Starting a Celery worker (queues default, encode, train); log: var/log/worker.log")
        prefix = settings.SOTTO["QUEUE_PREFIX"]
        log_dir = Path(settings.VAR_DIR) / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        queues = ",".join(f"{prefix}{q}" for q in ("default", "encode", "train"))
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'platform'}", "HF_HUB_OFFLINE": "1"}
        log = (log_dir / "worker.log").open("ab")
        return subprocess.Popen(  # noqa: S603 - our own interpreter and fixed arguments
            [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "--pool", "solo",
             "--loglevel", "INFO", "-n", "demo@%h"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _print_credentials(self, tenant: Tenant, key: str, password: str, host: str, port: int) -> None:
        base = f"http://{host}:{port}"
        self.stdout.write(
            "\n".join(
                [
                    "",
                    self.style.SUCCESS("Sotto demo is ready."),
                    f"  Web admin:  {base}/admin/   user {ADMIN_USER}   password {password}",
                    f"  API key:    {key}   (tenant {tenant.slug}; shown once)",
                    f"  API docs:   {base}/api/docs/",
                    "",
                    "  Try:",
                    f'    curl -s {base}/api/v1/tenant -H "Authorization: Bearer {key}"',
                    f"    curl -s -o /dev/null -w '%{{http_code}}\\n' {base}/api/v1/tenant   # 401 without a key",
                    *self._extra_curl_lines(base, key),
                    "",
                ]
            )
        )

    def _extra_curl_lines(self, base: str, key: str) -> list[str]:
        from apps.core.demo_steps import curl_examples

        return [f"    {line}" for line in curl_examples(base=base, key=key)]

    def _serve(self, host: str, port: int) -> None:
        self.step(f"Serving on http://{host}:{port} (Ctrl-C to stop)")
        cmd = [
            sys.executable, "-m", "gunicorn", "config.wsgi:application", "--pythonpath", str(ROOT / "platform"),
            "--bind", f"{host}:{port}", "--workers", "2", "--threads", "4", "--access-logfile", "-",
        ]
        server = subprocess.Popen(cmd, cwd=ROOT,  # noqa: S603 - fixed gunicorn command line
                                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
        try:
            server.wait()
        except KeyboardInterrupt:
            server.send_signal(signal.SIGTERM)
            server.wait(30)

"""``rotate_keys --tenant SLUG``: new encryption key version; user keys re-wrapped in the background."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenancy import keyring
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Rotate a tenant's encryption key: add a new version, re-wrap every user key under it (Celery, "
        "default queue, or --inline here with a progress bar), then retire the old version. Reads keep "
        "working throughout. The pseudonym key is never rotated."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, metavar="SLUG")
        parser.add_argument("--inline", action="store_true", help="re-wrap in this process instead of Celery")
        parser.add_argument("--status", action="store_true", help="only show key versions and their use")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = Tenant.objects.filter(slug=options["tenant"]).first()
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        if options["status"]:
            self._show(tenant.id)
            return
        version = keyring.tenant_key_rotate(tenant_id=tenant.id, actor="cli", enqueue=not options["inline"])
        self.stdout.write(
            f"tenant {tenant.slug}: encryption key v{version} is active; older versions are retiring"
        )
        if options["inline"]:
            self._inline(tenant.id)
        else:
            self.stdout.write(
                "re-wrapping user keys in the background (Celery task sotto.tenancy.rewrap_user_keys);"
            )
            self.stdout.write(f"follow it with: manage.py rotate_keys --tenant {tenant.slug} --status")
        self._show(tenant.id)

    def _inline(self, tenant_id: int) -> None:
        from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type information

        bar = tqdm(desc="re-wrapping user keys", unit="key", file=self.stderr._out)
        started = False

        def report(step: keyring.RewrapProgress) -> None:
            nonlocal started
            if not started:
                bar.total = step.rewrapped + step.remaining
                started = True
            bar.update(step.rewrapped)

        try:
            done = keyring.rotation_complete(tenant_id=tenant_id, actor="cli", progress=report)
        finally:
            bar.close()
        if not done:
            raise CommandError("rotation not finished in time; run it again (it carries on where it stopped)")

    def _show(self, tenant_id: int) -> None:
        for info in keyring.tenant_key_versions(tenant_id=tenant_id):
            used = "" if info.wrapped_user_keys is None else f"  wraps {info.wrapped_user_keys} user keys"
            self.stdout.write(f"  {info.purpose:<9} v{info.version:<3} {info.status:<8}{used}")

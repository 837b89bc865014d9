"""``rewrap_tenant_keys``: finish a master-key rotation by re-wrapping every tenant key."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

from apps.tenancy.keyring import KeyringError, tenant_keys_rewrap
from apps.tenancy.models import Tenant


class Command(BaseCommand):
    help = (
        "Re-wrap every tenant key under the current SOTTO_MASTER_KEY. Keep the old master key in "
        "SOTTO_PREVIOUS_MASTER_KEYS until this finishes; reads keep working throughout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="only this tenant (slug)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenants = Tenant.objects.order_by("slug")
        if options["tenant"]:
            tenants = tenants.filter(slug=options["tenant"])
            if not tenants.exists():
                raise CommandError(f"no tenant {options['tenant']!r}")
        total = 0
        try:
            for tenant in tqdm(list(tenants), desc="tenants", unit="tenant", disable=None):
                total += tenant_keys_rewrap(tenant_id=tenant.id)
        except KeyringError as exc:
            raise CommandError(f"{exc}. Is the old master key listed in SOTTO_PREVIOUS_MASTER_KEYS?") from exc
        self.stdout.write(f"re-wrapped {total} tenant key rows under the current master key")

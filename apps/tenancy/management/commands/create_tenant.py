"""``create_tenant SLUG [--json]``: create a tenant and an API key with every scope (shown once)."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenancy.services import TenancyError, api_key_create, tenant_create


class Command(BaseCommand):
    help = "Create a tenant and print a new API key with all scopes (the key is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--name", default="")
        parser.add_argument("--json", action="store_true", help='print {"tenant": SLUG, "api_key": KEY}')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            tenant = tenant_create(slug=options["slug"], name=options["name"], actor="cli")
            issued = api_key_create(tenant=tenant, name="initial", actor="cli")
        except TenancyError as exc:
            raise CommandError(str(exc)) from exc
        if options["json"]:
            self.stdout.write(json.dumps({"tenant": tenant.slug, "api_key": issued.raw}))
        else:
            self.stdout.write(f"tenant {tenant.slug} created\nAPI key (shown once): {issued.raw}")

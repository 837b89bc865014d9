"""``audit_verify --tenant SLUG | --platform``: check the stored chain; OK, or FAIL and exit 1."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.selectors import audit_public_key
from apps.audit.services import audit_verify_live
from apps.tenancy.selectors import tenant_get


class Command(BaseCommand):
    help = (
        "Verify a tenant's (or the platform's) audit chain from sequence 1 against every signed "
        "checkpoint. Prints OK, or the first bad sequence and why (exit status 1)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--tenant", metavar="SLUG")
        group.add_argument("--platform", action="store_true", help="the platform chain (tenant-less events)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = None
        if options["tenant"]:
            tenant = tenant_get(slug=options["tenant"])
            if tenant is None:
                raise CommandError(f"no tenant {options['tenant']!r}")
        name = "<platform>" if tenant is None else tenant.slug
        result = audit_verify_live(tenant)
        if not result.ok:
            where = "" if result.bad_sequence is None else f" at sequence {result.bad_sequence}"
            self.stdout.write(f"FAIL{where}: {result.reason}")
            raise SystemExit(1)
        self.stdout.write(
            f"OK: tenant {name}, events {result.events} (head sequence {result.head_sequence}), "
            f"checkpoints {result.checkpoints} verified, key id {audit_public_key().key_id}"
        )

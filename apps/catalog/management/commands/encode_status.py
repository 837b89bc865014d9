"""``encode_status --tenant SLUG``: encoding progress counts; ``--wait`` follows them with a bar."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.catalog.importing import wait_for_encoding
from apps.catalog.management.commands._common import tenant_by_slug
from apps.catalog.selectors import catalog_status
from apps.catalog.services import encoding_requeue


class Command(BaseCommand):
    help = "Show how many of a tenant's items are pending, ready or failed encoding."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--json", action="store_true", help="print the counts as JSON")
        parser.add_argument("--wait", action="store_true", help="follow progress until nothing is pending")
        parser.add_argument("--wait-timeout", type=float, default=3600.0)
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument(
            "--requeue",
            action="store_true",
            help="queue every pending or failed item again (after a lost task or a fixed model setting)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(options["tenant"])
        if options["requeue"]:
            queued = encoding_requeue(tenant_id=tenant.id)
            self.stderr.write(f"queued {queued} items for encoding")
        if options["wait"]:
            counts = wait_for_encoding(
                tenant_id=tenant.id, timeout_s=options["wait_timeout"], progress=not options["no_progress"]
            )
        else:
            counts = catalog_status(tenant_id=tenant.id)
        if options["json"]:
            self.stdout.write(json.dumps({"tenant": tenant.slug, **counts}))
        else:
            self.stdout.write(
                f"{tenant.slug}: {counts['items']} items: {counts['ready']} ready ({counts['truncated']} truncated), "
                f"{counts['pending']} pending, {counts['failed']} failed"
            )
        if options["wait"] and counts["pending"]:
            raise CommandError("timed out with items still pending")

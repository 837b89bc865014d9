"""``audit_export --tenant SLUG --out FILE [--since] [--until] [--format zip|csv]``: a reviewer bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.ranges import parse_time_bound
from apps.audit.services import audit_export_bundle, audit_export_csv
from apps.core.errors import DomainError
from apps.tenancy.selectors import tenant_get


class Command(BaseCommand):
    help = "Export a tenant's audit events (since <= time < until) as a signed bundle (zip) or CSV."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", required=True)
        parser.add_argument("--out", metavar="FILE", required=True)
        parser.add_argument("--since", help="ISO 8601 date or time (UTC unless a zone is given)")
        parser.add_argument("--until", help="ISO 8601 date or time, exclusive")
        parser.add_argument("--format", choices=["zip", "csv"], default="zip")
        parser.add_argument("--actor", default="cli", help="who the audit.export event names (default: cli)")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_get(slug=options["tenant"])
        if tenant is None:
            raise CommandError(f"no tenant {options['tenant']!r}")
        export = audit_export_bundle if options["format"] == "zip" else audit_export_csv
        try:
            since = parse_time_bound("since", options["since"])
            until = parse_time_bound("until", options["until"])
            data = export(tenant=tenant, since=since, until=until, actor=options["actor"])
        except DomainError as exc:
            raise CommandError(exc.message) from exc
        out = Path(options["out"])
        out.write_bytes(data)
        self.stdout.write(f"wrote {out} ({len(data)} bytes)")

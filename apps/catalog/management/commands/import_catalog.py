"""``import_catalog --tenant SLUG FILE``: upsert a CSV or JSON Lines catalogue, then optionally wait for encoding.

The whole file is read and validated first. ``--on-error stop`` (default) writes nothing if any
line is bad and names the first one; ``--on-error continue`` skips bad lines (each reported with
its line number) and imports the rest. Items go in batches of 1000 through the same service as
``POST /api/v1/items``; ``--wait`` shows encoding progress until no item is pending.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

from apps.catalog.importing import chunks, parse_catalog_file, wait_for_encoding
from apps.catalog.management.commands._common import tenant_by_slug
from apps.catalog.partitions import vector_partition_analyze
from apps.catalog.services import items_upsert
from apps.core.errors import DomainError

MAX_LISTED_ERRORS = 50


class Command(BaseCommand):
    help = "Import catalogue items from a CSV or JSON Lines file into a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument(
            "--format", choices=["csv", "jsonl"], default=None, help="default: from the file suffix"
        )
        parser.add_argument("--on-error", choices=["stop", "continue"], default="stop")
        parser.add_argument(
            "--wait", action="store_true", help="wait (with a progress bar) until encoding is done"
        )
        parser.add_argument("--wait-timeout", type=float, default=3600.0, help="seconds (default 3600)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(options["tenant"])
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        stop = options["on_error"] == "stop"
        try:
            parsed = parse_catalog_file(path, file_format=options["format"], stop_at_first_error=stop)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for error in parsed.errors[:MAX_LISTED_ERRORS]:
            self.stderr.write(f"{path.name}: {error}")
        if len(parsed.errors) > MAX_LISTED_ERRORS:
            self.stderr.write(f"... and {len(parsed.errors) - MAX_LISTED_ERRORS} more bad lines")
        if parsed.errors and stop:
            raise CommandError(
                f"{path.name}: {parsed.errors[0]}; nothing was imported (--on-error continue skips bad lines)"
            )
        items = list(parsed.items.values())
        progress = not options["no_progress"]
        totals = {"created": 0, "updated": 0, "unchanged": 0, "queued_for_encoding": 0}
        with tqdm(
            total=len(items), desc="importing", unit="item", disable=not progress, file=sys.stderr
        ) as bar:
            for batch in chunks(items):
                try:
                    result = items_upsert(tenant_id=tenant.id, items=batch).as_dict()
                except DomainError as exc:
                    raise CommandError(f"import stopped: {exc.message}") from exc
                for key in totals:
                    totals[key] += result[key]
                bar.update(len(batch))
        skipped = len(parsed.errors)
        self.stdout.write(
            f"{tenant.slug}: {len(items)} items from {parsed.lines_read} lines: {totals['created']} created, "
            f"{totals['updated']} updated, {totals['unchanged']} unchanged, {totals['queued_for_encoding']} queued for "
            f"encoding; {skipped} bad lines skipped; {parsed.duplicates} repeated ids (last line wins)"
        )
        if options["wait"]:
            counts = wait_for_encoding(
                tenant_id=tenant.id, timeout_s=options["wait_timeout"], progress=progress
            )
            self.stdout.write(
                f"encoding: {counts['ready']} ready, {counts['pending']} pending, {counts['failed']} failed"
            )
            vector_partition_analyze(tenant.id)  # the planner now knows the partition's size
            if counts["pending"]:
                raise CommandError("timed out waiting for encoding; is a worker consuming the encode queue?")

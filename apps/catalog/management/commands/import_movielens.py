"""``import_movielens --tenant SLUG DIR``: MovieLens movies (+ tags) as items, ratings as ``rating`` events.

Items: id = movieId, title, genres as categories, the movie's distinct tags as its description.
Ratings go through ``apps.profiles.services.events_ingest``, the same service as
``POST /api/v1/events``, in batches of 1000, with event ids ``ml-<userId>-<movieId>`` so a rerun
adds nothing twice. ``--max-users N`` keeps the first N users of ratings.csv (demo, tests);
``--no-ratings`` imports items only. ``--wait`` waits for encoding (with a progress bar) before
the ratings go in, so every rating folds into its user's state at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

from apps.catalog.importing import Rating, chunks, movielens_items, movielens_ratings, wait_for_encoding
from apps.catalog.management.commands._common import tenant_by_slug
from apps.catalog.partitions import vector_partition_analyze
from apps.catalog.services import items_upsert
from apps.core.errors import DomainError

RATINGS_BATCH = 1000


class Command(BaseCommand):
    help = "Import a MovieLens folder (movies.csv, tags.csv, ratings.csv) into a tenant."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--tenant", required=True, help="tenant slug")
        parser.add_argument("--no-ratings", action="store_true", help="import movies only")
        parser.add_argument(
            "--max-users", type=int, default=None, help="only the ratings of the first N users"
        )
        parser.add_argument("--wait", action="store_true", help="wait for encoding, with a progress bar")
        parser.add_argument("--wait-timeout", type=float, default=3600.0)
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        tenant = tenant_by_slug(options["tenant"])
        directory: Path = options["directory"]
        progress = not options["no_progress"]
        if options["max_users"] is not None and options["max_users"] < 1:
            raise CommandError("--max-users must be at least 1")
        try:
            items = movielens_items(directory)
        except (FileNotFoundError, KeyError, ValueError) as exc:
            raise CommandError(f"cannot read MovieLens movies from {directory}: {exc}") from exc
        created = queued = 0
        with tqdm(total=len(items), desc="movies", unit="item", disable=not progress, file=sys.stderr) as bar:
            for batch in chunks(items):
                try:
                    result = items_upsert(tenant_id=tenant.id, items=batch)
                except DomainError as exc:
                    raise CommandError(f"import stopped: {exc.message}") from exc
                created += result.created
                queued += result.queued
                bar.update(len(batch))
        self.stdout.write(f"{tenant.slug}: {len(items)} movies ({created} new, {queued} queued for encoding)")
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
        if options["no_ratings"]:
            return
        totals = self._ratings(tenant.id, directory, options["max_users"], progress)
        self.stdout.write(
            f"{tenant.slug}: {totals['accepted']} ratings ingested ({totals['new']} new, {totals['duplicates']} "
            f"already there, {totals['pending']} waiting for their item's vector)"
        )

    def _ratings(
        self, tenant_id: int, directory: Path, max_users: int | None, progress: bool
    ) -> dict[str, int]:
        ratings = list(movielens_ratings(directory, max_users=max_users))
        totals = {"accepted": 0, "new": 0, "duplicates": 0, "pending": 0}
        with tqdm(
            total=len(ratings), desc="ratings", unit="event", disable=not progress, file=sys.stderr
        ) as bar:
            for start in range(0, len(ratings), RATINGS_BATCH):
                batch = ratings[start : start + RATINGS_BATCH]
                try:
                    result = ratings_ingest(tenant_id, batch)
                except DomainError as exc:
                    raise CommandError(
                        f"ratings stopped in rows {start + 2}-{start + 1 + len(batch)} of ratings.csv: {exc.message}"
                    ) from exc
                for key in totals:
                    totals[key] += int(result[key])
                bar.update(len(batch))
        return totals


def rating_event(rating: Rating) -> dict[str, Any]:
    """One ratings.csv row as a ``POST /api/v1/events`` event (deterministic id: reruns add nothing)."""
    return {
        "event_id": f"ml-{rating.user}-{rating.item}",
        "user": rating.user,
        "item": rating.item,
        "type": "rating",
        "value": rating.value,
        "timestamp": rating.timestamp,
    }


def ratings_ingest(tenant_id: int, batch: list[Rating]) -> dict[str, int]:
    """Validate and ingest one batch exactly as the events API does, in one tenant transaction."""
    from apps.core.tenant_db import tenant_context
    from apps.profiles.services import events_ingest
    from apps.profiles.validation import validate_events

    payload = {"events": [rating_event(r) for r in batch]}
    events = validate_events(payload)
    with tenant_context(tenant_id):
        result = events_ingest(tenant_id=tenant_id, events=events, total=len(batch))
    counts: dict[str, int] = result.as_dict()
    return counts

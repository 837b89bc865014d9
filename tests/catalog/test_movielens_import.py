"""import_movielens: movies as items, ratings through the same ingest service as the events API."""

import csv
import io
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.catalog.selectors import catalog_status, item_get

pytestmark = pytest.mark.worker

DATASET = Path(__file__).resolve().parents[2] / "data" / "ml-latest-small"


def _subset(target: Path, movie_ids: set[str]) -> int:
    """movies.csv, tags.csv and ratings.csv restricted to ``movie_ids``; returns the rating count."""
    target.mkdir()
    count = 0
    for name in ("movies.csv", "tags.csv", "ratings.csv"):
        with (
            (DATASET / name).open(encoding="utf-8", newline="") as src,
            (target / name).open("w", encoding="utf-8", newline="") as dst,
        ):
            reader = csv.DictReader(src)
            writer = csv.DictWriter(dst, fieldnames=reader.fieldnames or [])
            writer.writeheader()
            for row in reader:
                if row["movieId"] in movie_ids:
                    writer.writerow(row)
                    count += name == "ratings.csv"
    return count


def _run(*args):
    out = io.StringIO()
    call_command(*args, "--no-progress", stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_movies_become_items_and_ratings_become_events_once(tenant_a, tmp_path, celery_worker_proc):
    movies = {"1", "2", "3", "6", "47", "50", "110", "260", "296", "318"}
    folder = tmp_path / "ml"
    _subset(folder, movies)
    # the ratings of the first 3 users of ratings.csv, among these movies
    with (folder / "ratings.csv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first_users = list(dict.fromkeys(r["userId"] for r in rows))[:3]
    expected = sum(r["userId"] in first_users for r in rows)

    out = _run(
        "import_movielens",
        str(folder),
        "--tenant",
        tenant_a.slug,
        "--max-users",
        "3",
        "--wait",
        "--wait-timeout",
        "240",
    )
    assert "10 movies (10 new, 10 queued for encoding)" in out
    assert f"{expected} ratings ingested ({expected} new, 0 already there, 0 waiting" in out
    assert catalog_status(tenant_id=tenant_a.tenant.id)["ready"] == 10
    heat = item_get(tenant_id=tenant_a.tenant.id, external_id="6")
    assert heat.title == "Heat (1995)" and heat.categories == ["Action", "Crime", "Thriller"]

    again = _run("import_movielens", str(folder), "--tenant", tenant_a.slug, "--max-users", "3")
    assert "10 movies (0 new, 0 queued for encoding)" in again
    assert f"{expected} ratings ingested (0 new, {expected} already there" in again


def test_a_folder_without_movies_is_a_clear_error(tenant_a, tmp_path):
    with pytest.raises(CommandError, match=r"movies\.csv not found"):
        _run("import_movielens", str(tmp_path), "--tenant", tenant_a.slug)

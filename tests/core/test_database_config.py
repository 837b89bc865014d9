"""DATABASE_PREPARE_THRESHOLD: parsed strictly, applied to both database targets, and really used."""

from __future__ import annotations

import pytest

from config.database import DEFAULT_PREPARE_THRESHOLD, prepare_threshold, resolve
from config.env import ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, DEFAULT_PREPARE_THRESHOLD),
        ("", DEFAULT_PREPARE_THRESHOLD),
        ("0", 0),
        ("12", 12),
        ("off", None),
        (" OFF ", None),
    ],
)
def test_the_threshold_reads_a_count_or_off(raw, expected):
    assert prepare_threshold(raw) == expected


@pytest.mark.parametrize("raw", ["-1", "five", "1.5", "none"])
def test_anything_else_is_refused_with_the_variable_named(raw):
    with pytest.raises(ConfigError, match="DATABASE_PREPARE_THRESHOLD"):
        prepare_threshold(raw)


def test_a_database_url_takes_it_from_the_environment_and_refuses_it_in_its_query(monkeypatch, tmp_path):
    """The broker URL is derived from DATABASE_URL, and SQLAlchemy would hand psycopg the string."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example:5432/sotto?sslmode=require")
    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)
    monkeypatch.setenv("DATABASE_PREPARE_THRESHOLD", "3")
    target = resolve(tmp_path)
    assert target.runtime["OPTIONS"] == {"sslmode": "require", "prepare_threshold": 3}
    assert "prepare_threshold" not in target.broker_url
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.example:5432/sotto?prepare_threshold=off")
    with pytest.raises(ConfigError, match="DATABASE_PREPARE_THRESHOLD instead"):
        resolve(tmp_path)


def test_the_running_connection_prepares_after_the_threshold(live_db):
    from django.db import connection

    from apps.core.bound_cursor import bound_cursor

    connection.ensure_connection()
    assert connection.connection.prepare_threshold == DEFAULT_PREPARE_THRESHOLD
    sql = "SELECT %s::int + 1 AS sotto_prepare_probe"
    with bound_cursor() as cursor:
        for n in range(DEFAULT_PREPARE_THRESHOLD + 1):
            cursor.execute(sql, [n])
        cursor.execute(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", ["%sotto_prepare_probe%"]
        )
        assert cursor.fetchone()[0] == 1

"""Parsing the ``since``/``until`` bounds reviewers type (API query, CLI, web admin form)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from apps.core.errors import DomainError


def parse_time_bound(name: str, text: str | None) -> datetime | None:
    """``YYYY-MM-DD`` (midnight UTC) or ISO 8601 date-time; no zone means UTC. Empty: no bound.

    Raises :class:`DomainError` (400) with a message a person can act on.
    """
    if text is None or not text.strip():
        return None
    raw = text.strip()
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        value = datetime.fromisoformat(raw)
    except ValueError:
        hint = " (a '+' in a URL reads as a space: write %2B, or use Z)" if " " in raw else ""
        raise DomainError(
            f"{name}: {raw[:40]!r} is not an ISO 8601 date or time, e.g. 2025-01-31 or 2025-01-31T12:00:00Z{hint}",
            details={name: raw[:40]},
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def check_range(since: datetime | None, until: datetime | None) -> None:
    """Both bounds timezone-aware, and ``since`` strictly before ``until`` when both are given."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and (value.tzinfo is None or value.utcoffset() is None):
            raise DomainError(f"{name} must be timezone-aware")
    if since is not None and until is not None and since >= until:
        raise DomainError(
            "since must be earlier than until",
            details={"since": since.isoformat(), "until": until.isoformat()},
        )

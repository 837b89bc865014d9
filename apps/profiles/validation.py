"""What the profile endpoints accept, checked in full before anything is written.

Limits (also in docs/privacy-model.md):

- user ids: strings (or integers) of 1-256 characters, no control characters;
- events: at most ``MAX_EVENTS_PER_BATCH`` (1000) per request (more: 413). Each event:
  ``event_id`` (string or integer, 1-128 characters, unique within the batch), ``user``,
  ``item`` (the catalogue id, 1-200 characters), ``type`` (one of ``EVENT_TYPES``),
  ``value`` (a number in [0, 5]; required for ``rating``; for other types it defaults to
  ``DEFAULT_VALUES[type]``), ``timestamp`` (optional, default now: ISO 8601 with a UTC offset
  or Unix seconds; not before 1990-01-01, at most one day ahead of the server clock);
- attributes: a flat JSON object of at most 100 entries; names 1-64 characters without control
  characters; values strings (at most 1024 characters), booleans, integers in the signed 64-bit
  range or finite floats (no null, lists or objects); at most 16 KiB as compact JSON in total (more: 413).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.core.errors import DomainError, ErrorCode, PayloadTooLarge
from apps.profiles.models import EventType
from apps.tenancy.pseudonyms import InvalidReference, is_valid_text, normalise_ref

MAX_EVENTS_PER_BATCH = 1000
MAX_EVENT_ID_LENGTH = 128
MAX_ITEM_ID_LENGTH = 200
EVENT_TYPES = tuple(EventType.values)
VALUE_MIN, VALUE_MAX = 0.0, 5.0
# Implicit feedback on the rating scale (rating_center 3.5 in FeatureConfig weighs 1.0).
DEFAULT_VALUES = {"view": 3.0, "click": 3.5, "cart": 4.0, "purchase": 4.5}
EARLIEST_TIMESTAMP = datetime(1990, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(days=1)

MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_NAME_LENGTH = 64
MAX_ATTRIBUTE_STRING_LENGTH = 1024
MAX_ATTRIBUTES_BYTES = 16 * 1024
INT_MIN, INT_MAX = -(2**63), 2**63 - 1

_EVENT_FIELDS = {"event_id", "user", "item", "type", "value", "timestamp"}


@dataclass(frozen=True)
class EventIn:
    index: int
    event_id: str
    user: str
    item: str
    type: str
    value: float
    ts: datetime


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any, now: datetime) -> datetime:
    if value is None:
        return now
    if isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError("must be ISO 8601 (e.g. 2025-01-31T12:00:00Z) or Unix seconds") from exc
        if ts.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 'Z' or '+02:00')")
    else:
        seconds = _number(value)
        if seconds is None:
            raise ValueError("must be ISO 8601 text or Unix seconds")
        try:
            ts = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError("is out of range") from exc
    ts = ts.astimezone(UTC)
    if ts < EARLIEST_TIMESTAMP:
        raise ValueError("is before 1990-01-01")
    if ts > now + MAX_FUTURE:
        raise ValueError("is more than one day in the future")
    return ts


def _ref(raw: Any, limit: int, seen: dict[tuple[str, int], str]) -> str:
    """``normalise_ref``, remembered per batch for text: users and items repeat across a batch's events."""
    if not isinstance(raw, str):
        return normalise_ref(raw, max_length=limit)
    key = (raw, limit)
    text = seen.get(key)
    if text is None:
        text = seen[key] = normalise_ref(raw, max_length=limit)
    return text


def _event(
    index: int, raw: Any, now: datetime, errors: dict[str, str], seen: dict[tuple[str, int], str]
) -> EventIn | None:
    if not isinstance(raw, dict):
        errors["event"] = "must be an object"
        return None
    unknown = sorted(set(raw) - _EVENT_FIELDS)
    if unknown:
        errors["event"] = f"unknown fields {unknown}; allowed: {sorted(_EVENT_FIELDS)}"
    refs: dict[str, str] = {}
    for field, limit in (("event_id", MAX_EVENT_ID_LENGTH), ("user", 256), ("item", MAX_ITEM_ID_LENGTH)):
        if field not in raw:
            errors[field] = "is required"
            continue
        try:
            # event ids are unique within a batch: nothing to remember
            refs[field] = _ref(raw[field], limit, {} if field == "event_id" else seen)
        except InvalidReference as exc:
            errors[field] = str(exc)
    kind = raw.get("type")
    if kind not in EVENT_TYPES:
        errors["type"] = f"must be one of {list(EVENT_TYPES)}"
    value: float | None = None
    if raw.get("value") is None:
        if kind == "rating":
            errors["value"] = f"is required for ratings ({VALUE_MIN:g} to {VALUE_MAX:g})"
        elif kind in DEFAULT_VALUES:
            value = DEFAULT_VALUES[kind]
    else:
        value = _number(raw["value"])
        if value is None or not VALUE_MIN <= value <= VALUE_MAX:
            errors["value"] = f"must be a number from {VALUE_MIN:g} to {VALUE_MAX:g}"
            value = None
    try:
        ts = _timestamp(raw.get("timestamp"), now)
    except ValueError as exc:
        errors["timestamp"] = str(exc)
    if errors or value is None:
        return None
    return EventIn(index, refs["event_id"], refs["user"], refs["item"], str(kind), value, ts)


def validate_events(payload: Any, *, now: datetime | None = None) -> list[EventIn]:
    """Every event, or DomainError listing each bad one by index (PayloadTooLarge over the batch limit)."""
    now = now or datetime.now(tz=UTC)
    if not isinstance(payload, dict) or not isinstance(payload.get("events"), list):
        raise DomainError('the body must be {"events": [ ... ]}')
    raw_events = payload["events"]
    extra = sorted(set(payload) - {"events"})
    if extra:
        raise DomainError(f"unknown top-level fields {extra}")
    if len(raw_events) > MAX_EVENTS_PER_BATCH:
        raise PayloadTooLarge(
            f"at most {MAX_EVENTS_PER_BATCH} events per request, got {len(raw_events)}",
            details={"max_events": MAX_EVENTS_PER_BATCH, "received": len(raw_events)},
        )
    if not raw_events:
        raise DomainError("events must not be empty")
    problems: list[dict[str, Any]] = []
    valid: list[EventIn] = []
    first_index: dict[str, int] = {}
    seen: dict[tuple[str, int], str] = {}
    for index, raw in enumerate(raw_events):
        errors: dict[str, str] = {}
        event = _event(index, raw, now, errors, seen)
        if event is not None:
            if event.event_id in first_index:
                errors["event_id"] = (
                    f"repeats the event_id of event {first_index[event.event_id]} in this batch"
                )
            else:
                first_index[event.event_id] = index
                valid.append(event)
        if errors:
            problems.append({"index": index, "errors": errors})
    if problems:
        raise invalid_events(problems, len(raw_events))
    return valid


def invalid_events(problems: list[dict[str, Any]], total: int) -> DomainError:
    return DomainError(
        f"{len(problems)} of {total} events are invalid; nothing was written",
        details={"events": problems},
        code=ErrorCode.INVALID_EVENTS,
    )


def _plain_value(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT_MIN <= value <= INT_MAX
    return isinstance(value, float) and math.isfinite(value)


def validate_attributes(payload: Any) -> dict[str, str | int | float | bool]:
    """The attribute map of ``{"attributes": {...}}``; DomainError/PayloadTooLarge say what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("attributes"), dict):
        raise DomainError('the body must be {"attributes": {"name": value, ...}}')
    extra = sorted(set(payload) - {"attributes"})
    if extra:
        raise DomainError(f"unknown top-level fields {extra}")
    attributes: dict[str, Any] = payload["attributes"]
    if len(attributes) > MAX_ATTRIBUTES:
        raise PayloadTooLarge(f"at most {MAX_ATTRIBUTES} attributes, got {len(attributes)}")
    problems: dict[str, str] = {}
    for position, (name, value) in enumerate(attributes.items()):
        # Names may be identifying too: errors point at them by position, never by text.
        where = f"attributes[{position}]"
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_ATTRIBUTE_NAME_LENGTH:
            problems[where] = f"name must be 1-{MAX_ATTRIBUTE_NAME_LENGTH} characters"
        elif any(ord(ch) < 32 or ord(ch) == 127 for ch in name) or not is_valid_text(name):
            problems[where] = "name must not contain control characters or unpaired surrogates"
        elif isinstance(value, str):
            if not is_valid_text(value):
                problems[where] = "string values must be valid Unicode (no unpaired surrogates)"
            elif len(value) > MAX_ATTRIBUTE_STRING_LENGTH:
                raise PayloadTooLarge(
                    f"{where}: string values hold at most {MAX_ATTRIBUTE_STRING_LENGTH} characters"
                )
        elif not _plain_value(value):
            problems[where] = "value must be a string, a boolean, a 64-bit integer or a finite number"
    if problems:
        raise DomainError(
            f"{len(problems)} attributes are invalid; nothing was written", details={"attributes": problems}
        )
    size = len(json.dumps(attributes, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_ATTRIBUTES_BYTES:
        raise PayloadTooLarge(f"attributes take {size} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}")
    return dict(attributes)

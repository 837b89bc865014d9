"""Every kind of bad input is named, by index and field, before anything is written (pure checks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.core.errors import DomainError, PayloadTooLarge
from apps.profiles.validation import (
    DEFAULT_VALUES,
    MAX_ATTRIBUTES_BYTES,
    validate_attributes,
    validate_events,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def ev(**overrides):
    body: dict[str, Any] = {
        "event_id": "e1",
        "user": "u",
        "item": "i",
        "type": "view",
        "timestamp": "2025-06-01T11:00:00Z",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not ...}


def errors_of(payload):
    with pytest.raises(DomainError) as info:
        validate_events(payload, now=NOW)
    assert not isinstance(info.value, PayloadTooLarge)
    return info.value.details["events"]


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (ev(type="like"), "type"),
        (ev(type="rating"), "value"),
        (ev(type="rating", value=5.5), "value"),
        (ev(type="rating", value=-1), "value"),
        (ev(type="rating", value="4"), "value"),
        (ev(type="rating", value=True), "value"),
        (ev(user=""), "user"),
        (ev(user="   "), "user"),
        (ev(user=["u"]), "user"),
        (ev(user=1.5), "user"),
        (ev(user="x" * 257), "user"),
        (ev(user="a\nb"), "user"),
        (ev(user="\ud800"), "user"),
        (ev(event_id="x\udfff"), "event_id"),
        (ev(item=None), "item"),
        (ev(item=...), "item"),
        (ev(event_id=...), "event_id"),
        (ev(event_id="e" * 129), "event_id"),
        (ev(timestamp="yesterday"), "timestamp"),
        (ev(timestamp="2025-06-01T11:00:00"), "timestamp"),
        (ev(timestamp=(NOW + timedelta(days=1, minutes=1)).isoformat()), "timestamp"),
        (ev(timestamp="1989-12-31T23:59:59Z"), "timestamp"),
        (ev(timestamp=10**20), "timestamp"),
        (ev(timestamp=False), "timestamp"),
        (ev(colour="red"), "event"),
        ("not an object", "event"),
    ],
)
def test_each_bad_event_is_reported_with_its_index_and_field(bad, field):
    good = ev(event_id="ok")
    problems = errors_of({"events": [good, bad]})
    assert problems == [{"index": 1, "errors": problems[0]["errors"]}]
    assert field in problems[0]["errors"]


def test_it_reports_every_bad_event_not_just_the_first():
    problems = errors_of(
        {"events": [ev(event_id="a", type="x"), ev(event_id="b"), ev(event_id="c", user="")]}
    )
    assert [p["index"] for p in problems] == [0, 2]


def test_a_repeated_event_id_inside_a_batch_is_an_error():
    problems = errors_of({"events": [ev(event_id="same"), ev(event_id="other"), ev(event_id="same")]})
    assert problems[0]["index"] == 2
    assert "event 0" in problems[0]["errors"]["event_id"]


def test_error_messages_never_repeat_the_user_id():
    secret = "alice@example.com" + "x" * 300
    with pytest.raises(DomainError) as info:
        validate_events({"events": [ev(user=secret)]}, now=NOW)
    assert "alice" not in repr(info.value.details) and "alice" not in info.value.message


@pytest.mark.parametrize(
    "payload", [None, [], {"events": "x"}, {"events": []}, {"evts": []}, {"events": [], "x": 1}]
)
def test_malformed_bodies_are_400(payload):
    with pytest.raises(DomainError) as info:
        validate_events(payload, now=NOW)
    assert info.value.status == 400


def test_over_1000_events_is_413_before_looking_at_them():
    with pytest.raises(PayloadTooLarge) as info:
        validate_events({"events": ["junk"] * 1001}, now=NOW)
    assert info.value.status == 413


def test_defaults_timestamps_and_integer_ids():
    events = validate_events(
        {
            "events": [
                ev(event_id=7, user=42, item=9, type="purchase", timestamp=...),
                ev(event_id="r", type="rating", value=4, timestamp=1_700_000_000),
                ev(event_id="c", type="click", value=1.0, timestamp="2025-06-01T13:00:00+02:00"),
            ]
        },
        now=NOW,
    )
    assert (events[0].event_id, events[0].user, events[0].item) == ("7", "42", "9")
    assert events[0].value == DEFAULT_VALUES["purchase"] and events[0].ts == NOW
    assert events[1].value == 4.0 and events[1].ts == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert events[2].value == 1.0 and events[2].ts == datetime(2025, 6, 1, 11, 0, tzinfo=UTC)


def test_a_timestamp_just_under_a_day_ahead_is_accepted():
    ahead = (NOW + timedelta(hours=23)).isoformat()
    assert validate_events({"events": [ev(timestamp=ahead)]}, now=NOW)[0].ts == NOW + timedelta(hours=23)


@pytest.mark.parametrize(
    "attributes",
    [
        {"a": None},
        {"a": [1]},
        {"a": {"b": 1}},
        {"": 1},
        {"a" * 65: 1},
        {"a\x00": 1},
        {"a": 2**63},
        {"\ud800": 1},
        {"a": "\udc00"},
    ],
)
def test_bad_attributes_are_400(attributes):
    with pytest.raises(DomainError) as info:
        validate_attributes({"attributes": attributes})
    assert info.value.status == 400


@pytest.mark.parametrize(
    "attributes",
    [
        {f"k{i}": i for i in range(101)},
        {"bio": "x" * 1025},
        {f"k{i}": "y" * 1000 for i in range(MAX_ATTRIBUTES_BYTES // 1000 + 1)},
    ],
)
def test_oversize_attributes_are_413(attributes):
    with pytest.raises(PayloadTooLarge):
        validate_attributes({"attributes": attributes})


def test_attribute_errors_point_by_position_not_name():
    with pytest.raises(DomainError) as info:
        validate_attributes({"attributes": {"ok": 1, "ssn-123-45-6789": None}})
    assert info.value.details == {
        "attributes": {"attributes[1]": info.value.details["attributes"]["attributes[1]"]}
    }
    assert "6789" not in repr(info.value.details)


@pytest.mark.parametrize("payload", [None, {"attributes": []}, {"attrs": {}}, {"attributes": {}, "x": 1}])
def test_malformed_attribute_bodies_are_400(payload):
    with pytest.raises(DomainError):
        validate_attributes(payload)

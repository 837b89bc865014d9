"""Typed request and response documents of the end-user and events API (OpenAPI via drf-spectacular).

Schema only: the views keep validating with ``apps.profiles.validation`` (the whole batch before
anything is written, problems listed per index, 413 over the limits; error details never echo an
attribute name) and keep answering with the dicts the services build. These classes state those
shapes and limits so ``/api/schema/`` types every request and response.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.api.serializers import StringOrInteger
from apps.profiles import validation
from apps.profiles.models import EventType

ATTRIBUTE_VALUE_SCHEMA = {
    "oneOf": [
        {"type": "string", "maxLength": validation.MAX_ATTRIBUTE_STRING_LENGTH},
        {"type": "number"},
        {"type": "boolean"},
    ]
}


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": ATTRIBUTE_VALUE_SCHEMA,
        "maxProperties": validation.MAX_ATTRIBUTES,
        "description": f"flat: names 1-{validation.MAX_ATTRIBUTE_NAME_LENGTH} characters without control characters; "
        f"values strings, booleans, 64-bit integers or finite numbers (no null, lists or objects); "
        f"at most {validation.MAX_ATTRIBUTES_BYTES} bytes as compact JSON",
    }
)
class UserAttributes(serializers.DictField):  # type: ignore[type-arg]
    """An end user's attributes: what ``PUT`` stores (each encrypted) and the export decrypts."""


@extend_schema_field(
    {
        "oneOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
        "nullable": True,
        "description": "ISO 8601 with a UTC offset, or Unix seconds; not before 1990, at most a day "
        "ahead; default now",
    }
)
class Timestamp(serializers.Field):  # type: ignore[type-arg]
    """When an event happened, as the client may send it."""


class EventInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    event_id = StringOrInteger(
        help_text=f"your idempotency key, 1-{validation.MAX_EVENT_ID_LENGTH} characters, unique in the batch"
    )
    user = StringOrInteger(help_text="your user id, 1-256 characters")
    item = StringOrInteger(
        help_text=f"your item id, 1-{validation.MAX_ITEM_ID_LENGTH} characters (must exist)"
    )
    type = serializers.ChoiceField(choices=EventType.choices)
    value = serializers.FloatField(
        min_value=validation.VALUE_MIN,
        max_value=validation.VALUE_MAX,
        required=False,
        allow_null=True,
        help_text="required for rating; else a default per type",
    )
    timestamp = Timestamp(required=False)


class EventsInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    events = serializers.ListField(
        child=EventInSerializer(),
        min_length=1,
        max_length=validation.MAX_EVENTS_PER_BATCH,
        help_text=f"1-{validation.MAX_EVENTS_PER_BATCH} events (more: 413), all valid or none written",
    )


class EventsIngestOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    accepted = serializers.IntegerField()
    new = serializers.IntegerField()
    duplicates = serializers.IntegerField(help_text="event ids already stored (a resent batch)")
    pending = serializers.IntegerField(help_text="new events on items without a content vector yet")


class UserAttributesInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    attributes = UserAttributes()


class UserAttributesOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user = serializers.CharField()
    attributes_stored = serializers.IntegerField()
    created = serializers.BooleanField(help_text="the user was new (the answer is then 201)")


class ExportEventOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    event_id_hash = serializers.CharField(
        help_text="keyed hash of your event id (the id itself is not stored)"
    )
    item = serializers.CharField(allow_null=True)
    type = serializers.ChoiceField(choices=EventType.choices)
    value = serializers.FloatField()
    timestamp = serializers.DateTimeField()
    folded = serializers.BooleanField(help_text="already in the real-time state")


class StateSummaryOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    events_folded = serializers.IntegerField()
    newest_event_at = serializers.DateTimeField()
    rating_sum = serializers.FloatField()
    channel_weights = serializers.ListField(child=serializers.FloatField())
    content_dim = serializers.IntegerField()
    last_items = serializers.ListField(child=serializers.CharField(allow_null=True))


class UserExportOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user = serializers.CharField()
    pseudonym = serializers.CharField(help_text="hex HMAC of the user id, what is stored instead of it")
    created_at = serializers.DateTimeField()
    attributes = UserAttributes(help_text="decrypted")
    attribute_integrity_failures = serializers.IntegerField()
    events = ExportEventOutSerializer(many=True, help_text="this page, oldest first")
    events_total = serializers.IntegerField()
    events_next_offset = serializers.IntegerField(allow_null=True, help_text="null on the last page")
    state = StateSummaryOutSerializer(allow_null=True)


class ErasedCountsOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    events = serializers.IntegerField()
    attributes = serializers.IntegerField()
    state = serializers.IntegerField()
    user = serializers.IntegerField()


class ErasureReceiptOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user = serializers.CharField()
    erased_at = serializers.DateTimeField()
    deleted = ErasedCountsOutSerializer()
    key_destroyed = serializers.BooleanField()
    receipt_id = serializers.CharField()

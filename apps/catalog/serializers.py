"""Typed request and response documents of the items API (OpenAPI via drf-spectacular).

Schema only: the views keep answering with the dicts ``views.item_repr`` and the selectors build,
and keep validating with ``apps.catalog.validation`` (whole-batch, per-index errors, 413 over the
batch limit), whose messages clients and the file importers rely on. These classes state those
shapes and limits so ``/api/schema/`` types every request and response; ``tests/api/test_schema_types.py``
checks real answers against them.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.api.serializers import StringOrInteger
from apps.catalog import validation
from apps.catalog.models import EncodingStatus

SCALAR_SCHEMA = {"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}], "nullable": True}


@extend_schema_field(SCALAR_SCHEMA)
class AttributeValue(serializers.Field):  # type: ignore[type-arg]
    """One value of an item's flat ``attributes`` object: a string, number, boolean or null."""


@extend_schema_field(
    {
        "type": "object",
        "additionalProperties": SCALAR_SCHEMA,
        "description": f"flat: keys 1-{validation.MAX_ATTRIBUTE_KEY} characters, values string, "
        f"number, boolean or null; at most {validation.MAX_ATTRIBUTES_BYTES} bytes as JSON",
    }
)
class ItemAttributes(serializers.DictField):  # type: ignore[type-arg]
    """The item's own flat attribute object (stored as sent, never interpreted)."""


class ItemInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = StringOrInteger(
        help_text=f"your id, 1-{validation.MAX_ID} characters (an integer means its decimal string)"
    )
    title = serializers.CharField(max_length=validation.MAX_TITLE)
    description = serializers.CharField(
        max_length=validation.MAX_DESCRIPTION, required=False, allow_blank=True, allow_null=True
    )
    categories = serializers.ListField(
        child=serializers.CharField(max_length=validation.MAX_CATEGORY),
        max_length=validation.MAX_CATEGORIES,
        required=False,
        allow_null=True,
    )
    attributes = ItemAttributes(required=False, allow_null=True)
    available = serializers.BooleanField(required=False, allow_null=True, help_text="default true")


class ItemsUpsertInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    items = serializers.ListField(
        child=ItemInSerializer(),
        min_length=1,
        max_length=validation.MAX_BATCH,
        help_text=f"1-{validation.MAX_BATCH} items (more: 413), all valid or none written",
    )


class ItemsUpsertOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    received = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    queued_for_encoding = serializers.IntegerField(help_text="new or changed text, queued for BERT encoding")


class ItemEncodingOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.ChoiceField(choices=EncodingStatus.choices)
    model = serializers.CharField(allow_null=True, help_text="the encoder of the stored vector")
    updated_at = serializers.DateTimeField(allow_null=True)
    truncated = serializers.BooleanField(
        allow_null=True, help_text="null unless ready: whether the encoder cut the text"
    )
    error = serializers.CharField(required=False, help_text="only when the status is failed")


class ItemOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField()
    title = serializers.CharField()
    description = serializers.CharField(allow_blank=True)
    categories = serializers.ListField(child=serializers.CharField())
    attributes = ItemAttributes()
    available = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    encoding = ItemEncodingOutSerializer()


class ItemsPageOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    items = ItemOutSerializer(many=True)
    next_cursor = serializers.CharField(
        allow_null=True, help_text="pass as cursor for the next page; null on the last"
    )


class ScoredItemOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One ranked item (similar items, recommendations, search): its id and its score."""

    id = serializers.CharField()
    score = serializers.FloatField()


class SimilarItemsOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.CharField(help_text="the item asked about")
    k = serializers.IntegerField()
    items = ScoredItemOutSerializer(many=True, help_text="nearest first; score is the cosine")


class CatalogStatusOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    items = serializers.IntegerField()
    pending = serializers.IntegerField()
    ready = serializers.IntegerField()
    failed = serializers.IntegerField()
    truncated = serializers.IntegerField(help_text="ready items whose text the encoder cut")

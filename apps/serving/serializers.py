"""Typed response documents of ``/api/v1/recommendations`` and ``/api/v1/search`` (OpenAPI only).

The views keep parsing their query strings with ``apps.serving.params`` (every bad value a 400
naming the parameter) and answer with the dicts they build; these classes describe those answers.
"""

from __future__ import annotations

from rest_framework import serializers

from apps.catalog.serializers import ScoredItemOutSerializer
from apps.serving.selectors import CONTENT, NEWEST, PERSONAL, POPULAR


class RecommendationsOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user = serializers.CharField()
    items = ScoredItemOutSerializer(many=True, help_text="best first (with diversity > 0, in MMR order)")
    model_version = serializers.IntegerField(
        allow_null=True, help_text="the model that ranked them (personal only)"
    )
    strategy = serializers.ChoiceField(choices=[PERSONAL, CONTENT, POPULAR, NEWEST])
    note = serializers.CharField(
        allow_null=True, help_text="why the list is what it is, when that needs saying"
    )
    request_id = serializers.CharField(allow_null=True, help_text="the X-Request-ID of this answer")


class SearchOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    query = serializers.CharField(help_text="the query as searched (whitespace collapsed)")
    user = serializers.CharField(allow_null=True)
    items = ScoredItemOutSerializer(many=True)
    personalised = serializers.BooleanField(help_text="the user's interest was blended in")
    user_weight = serializers.FloatField(
        help_text="the blend's weight of the user's interest (0 when not personalised)"
    )
    note = serializers.CharField(allow_null=True)
    request_id = serializers.CharField(allow_null=True)

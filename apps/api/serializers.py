"""Typed request/response documents of the endpoints this app serves (OpenAPI via drf-spectacular).

``Strict`` serializers refuse keys they do not know (400 naming them) instead of ignoring them: a
misspelt setting must not look as if it had been saved.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.modeling.models import Cadence
from apps.modeling.run_config import DP_DESIGNS
from apps.tenancy.models import Scope


class Strict(serializers.Serializer):  # type: ignore[type-arg]
    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            writable = {name for name, f in self.fields.items() if not f.read_only}
            unknown = sorted(set(data) - writable)
            if unknown:
                raise serializers.ValidationError({key: ["unknown or read-only field"] for key in unknown})
        return super().to_internal_value(data)


class Number(serializers.FloatField):
    """A JSON number only: DRF would take ``true`` as 1.0 and ``"8"`` as 8.0, silently."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return float(super().to_internal_value(data))


@extend_schema_field({"oneOf": [{"type": "string"}, {"type": "integer"}]})
class StringOrInteger(serializers.Field):  # type: ignore[type-arg]
    """A client id: a string, or an integer that means its decimal string (``42`` is ``"42"``).

    Schema only: the endpoints that take such ids keep their hand validation (``normalise_ref``,
    ``catalog.validation``), whose messages and limits clients rely on.
    """

    def to_internal_value(self, data: Any) -> Any:
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class TenantOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``GET /api/v1/tenant``: who the presented key is."""

    tenant = serializers.CharField(help_text="the key's tenant (its slug)")
    key_prefix = serializers.CharField(help_text="the key's public prefix (the part before the secret)")
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), help_text="sorted")


class ModelSettings(Strict):
    dp_design = serializers.ChoiceField(
        choices=list(DP_DESIGNS),
        required=False,
        help_text='"auto": the Opacus tower from 5,000 users, the factor design below',
    )


class LastRun(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    status = serializers.CharField()
    error = serializers.CharField(allow_blank=True)


class Alert(serializers.Serializer):  # type: ignore[type-arg]
    at = serializers.DateTimeField(allow_null=True)
    message = serializers.CharField()


class RetrainingSettings(Strict):
    cadence = serializers.ChoiceField(choices=list(Cadence.values), required=False)
    epsilon_per_run = Number(required=False, help_text="ε charged by each scheduled run")
    min_new_events = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text='cadence "events": new events that make a run due',
    )
    last_attempt_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_run = LastRun(read_only=True, allow_null=True)
    alert = Alert(read_only=True, allow_null=True)


class OperatorCap(serializers.Serializer):  # type: ignore[type-arg]
    epsilon_total_max = serializers.FloatField()
    renewal_days_min = serializers.IntegerField()


class BudgetPolicy(Strict):
    epsilon_total = Number(required=False, help_text="lifetime ε, or ε per renewal window")
    delta = Number(required=False, help_text="per-release δ cap (each release uses min(δ, 1/N))")
    renewal_days = serializers.IntegerField(
        required=False,
        allow_null=True,
        help_text="null: a lifetime budget; N: what any N-day window may spend",
    )
    operator_cap = OperatorCap(read_only=True)


class RetentionSettings(Strict):
    event_retention_days = serializers.IntegerField(required=False)


class Objective(Strict):
    latency_threshold_ms = Number(required=False)
    latency_target = Number(required=False)
    availability_target = Number(required=False)


class TenantSettings(Strict):
    model = ModelSettings(required=False)
    retraining = RetrainingSettings(required=False)
    privacy_budget = BudgetPolicy(required=False)
    retention = RetentionSettings(required=False)
    rate_limit_per_s = Number(
        required=False, allow_null=True, help_text="requests/s per API key unless the key sets its own"
    )
    rate_limit_default_per_s = serializers.FloatField(read_only=True)
    slo_objectives = serializers.DictField(child=Objective(), required=False)

"""Typed response document of ``GET /api/v1/slo`` (OpenAPI only; the view answers with the dict
``TenantSloStatus.as_dict`` builds, whose non-finite floats are already null)."""

from __future__ import annotations

from rest_framework import serializers

from apps.slo.endpoints import CLASSES
from apps.slo.models import SloAlert
from apps.slo.selectors import BUDGET_EXHAUSTED, MEETS, NOT_ENOUGH_TRAFFIC, STATUS_WINDOWS

_CLASSES = ", ".join(CLASSES)
_WINDOWS = ", ".join(label for label, _ in STATUS_WINDOWS)


class SloObjectiveOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    endpoint_class = serializers.CharField()
    latency_threshold_ms = serializers.FloatField()
    latency_target = serializers.FloatField(help_text="share of served requests at most the threshold")
    availability_target = serializers.FloatField()
    is_default = serializers.BooleanField(help_text="the platform default (the tenant has not set its own)")
    updated_at = serializers.DateTimeField(allow_null=True)
    updated_by = serializers.CharField(allow_blank=True)


class SloWindowOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    window = serializers.CharField()
    seconds = serializers.IntegerField()
    requests = serializers.IntegerField()
    served = serializers.IntegerField()
    # named like ``Serializer.errors``: DRF's metaclass moves declared fields out of the class body, so
    # the property is untouched at run time; only the type checker sees an override
    errors = serializers.IntegerField()  # type: ignore[assignment]
    throttled = serializers.IntegerField()
    p50_ms = serializers.FloatField(allow_null=True)
    p95_ms = serializers.FloatField(allow_null=True)
    p99_ms = serializers.FloatField(allow_null=True)
    share_good = serializers.FloatField(allow_null=True)
    availability = serializers.FloatField(allow_null=True)
    latency_burn_rate = serializers.FloatField(allow_null=True, help_text="null below the minimum sample")
    availability_burn_rate = serializers.FloatField(allow_null=True)
    judged = serializers.BooleanField()


class SloClassStatusOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    endpoint_class = serializers.CharField()
    windows = serializers.DictField(child=SloWindowOutSerializer(), help_text=f"by window: {_WINDOWS}")
    latency_budget_remaining = serializers.FloatField(
        allow_null=True, help_text="bounded to [-1, 1]; null unjudged"
    )
    availability_budget_remaining = serializers.FloatField(allow_null=True)
    meets_objective = serializers.BooleanField(allow_null=True)
    judged = serializers.BooleanField()
    sample = serializers.IntegerField()
    min_sample = serializers.IntegerField()
    verdict = serializers.ChoiceField(choices=[NOT_ENOUGH_TRAFFIC, MEETS, BUDGET_EXHAUSTED])
    summary = serializers.CharField()
    latency_budget_remaining_raw = serializers.FloatField(allow_null=True)
    availability_budget_remaining_raw = serializers.FloatField(allow_null=True)


class SloAlertOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    endpoint_class = serializers.CharField()
    sli = serializers.ChoiceField(choices=SloAlert.Sli.choices)
    severity = serializers.ChoiceField(choices=SloAlert.Severity.choices)
    factor = serializers.FloatField()
    burn_long = serializers.FloatField()
    burn_short = serializers.FloatField()
    long_window_s = serializers.IntegerField()
    short_window_s = serializers.IntegerField()
    raised_at = serializers.DateTimeField()
    cleared_at = serializers.DateTimeField(allow_null=True)


class SloStatusOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    tenant = serializers.CharField()
    now = serializers.DateTimeField()
    objectives = serializers.DictField(
        child=SloObjectiveOutSerializer(), help_text=f"by endpoint class: {_CLASSES}"
    )
    status = serializers.DictField(
        child=SloClassStatusOutSerializer(), help_text=f"by endpoint class: {_CLASSES}"
    )
    open_alerts = SloAlertOutSerializer(many=True)

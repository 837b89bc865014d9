"""Typed request and response documents of training runs, the privacy budget, model versions and
popularity releases (OpenAPI via drf-spectacular).

Schema only: the views keep answering with what ``selectors.run_repr``, ``selectors.privacy_budget``,
``selectors.model_versions`` and the services build, and ε keeps being checked by
``budget.parse_epsilon`` (its messages name the field). The mechanism records (``release``,
``gate``, ledger ``details``) stay free-form on purpose: their keys depend on the DP design that ran
and are documented in docs/modeling.md, not frozen into the API.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.api.serializers import OperatorCap
from apps.modeling.models import ReleaseKind, RunStatus, VersionStatus

FREE_FORM = "free-form"


@extend_schema_field({"type": "number", "minimum": 0, "exclusiveMinimum": True})
class PositiveNumber(serializers.FloatField):
    """A positive finite JSON number (ε): OpenAPI's exclusive minimum, which DRF's fields cannot state."""


class EpsilonInSerializer(serializers.Serializer):  # type: ignore[type-arg]
    epsilon = PositiveNumber(help_text="ε to charge: a positive finite number (not a string)")


class TrainingRunOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=RunStatus.choices)
    epsilon = serializers.FloatField(help_text="ε charged for the run")
    delta = serializers.FloatField()
    progress = serializers.FloatField(help_text="0..1, only grows; 1.0 once succeeded or rejected")
    stage = serializers.CharField(allow_blank=True, help_text="what the worker is doing now")
    epoch = serializers.IntegerField()
    epochs = serializers.IntegerField()
    loss = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    heartbeat_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    users = serializers.IntegerField()
    epsilon_spent = serializers.FloatField(allow_null=True)
    epsilon_sgd = serializers.FloatField(allow_null=True)
    epsilon_pop = serializers.FloatField(allow_null=True)
    delta_used = serializers.FloatField(allow_null=True)
    metrics = serializers.DictField(help_text=f"{FREE_FORM}: the holdout metrics and their protocol (not DP)")
    model_version = serializers.IntegerField(allow_null=True)
    error = serializers.CharField(allow_blank=True)
    design = serializers.CharField(allow_null=True, help_text="tower or factors: what ran, or is planned")
    mechanism = serializers.CharField()
    release = serializers.DictField(help_text=f"{FREE_FORM}: the mechanisms that ran with their σ, q, steps")
    gate = serializers.DictField(help_text=f"{FREE_FORM}: the activation gate's verdict and reason")


class TrainingRunsOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    runs = TrainingRunOutSerializer(many=True, help_text="newest first, at most 50")


class LedgerEntryOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    kind = serializers.ChoiceField(choices=ReleaseKind.choices)
    run_id = serializers.IntegerField(allow_null=True)
    epsilon = serializers.FloatField()
    delta = serializers.FloatField()
    users = serializers.IntegerField()
    noise_multiplier = serializers.FloatField(allow_null=True)
    sampling_rate = serializers.FloatField(allow_null=True)
    epochs = serializers.IntegerField(allow_null=True)
    steps = serializers.IntegerField(allow_null=True)
    clip_norm = serializers.FloatField(allow_null=True)
    accountant = serializers.CharField(allow_null=True)
    epsilon_accounted = serializers.FloatField(allow_null=True)
    delta_used = serializers.FloatField(allow_null=True)
    mechanism = serializers.CharField()
    refunded = serializers.BooleanField()
    details = serializers.DictField(
        help_text=f"{FREE_FORM}: the planned and the released mechanism's parameters"
    )


class PrivacyBudgetOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    policy = serializers.ChoiceField(choices=["lifetime", "rolling"])
    renewal_days = serializers.IntegerField(allow_null=True)
    window_start = serializers.DateTimeField(allow_null=True)
    epsilon_total = serializers.FloatField()
    epsilon_spent = serializers.FloatField(help_text="the charges that count now (in the renewal window)")
    epsilon_remaining = serializers.FloatField()
    epsilon_spent_lifetime = serializers.FloatField()
    next_renewal_at = serializers.DateTimeField(allow_null=True)
    epsilon_renewed_then = serializers.FloatField()
    operator_cap = OperatorCap()
    delta = serializers.FloatField()
    delta_spent = serializers.FloatField()
    composition = serializers.CharField()
    ledger = LedgerEntryOutSerializer(many=True, help_text="every entry, oldest first")


class ModelVersionOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=VersionStatus.choices)
    created_at = serializers.DateTimeField()
    activated_at = serializers.DateTimeField(allow_null=True)
    run_id = serializers.IntegerField(allow_null=True)
    design = serializers.CharField(allow_null=True)
    mechanism = serializers.CharField(allow_null=True)
    mechanisms = serializers.ListField(
        child=serializers.DictField(), help_text=f"{FREE_FORM} records: name, σ, sensitivity, ε alone, ..."
    )
    epsilon_spent = serializers.FloatField(allow_null=True)
    metrics = serializers.DictField(
        child=serializers.FloatField(), help_text="holdout metrics (recall@20_capped, ndcg@10, ...); not DP"
    )
    gate = serializers.DictField(help_text=f"{FREE_FORM}: the activation gate's verdict and reason")
    n_items = serializers.IntegerField()
    item_dim = serializers.IntegerField()
    switch = serializers.ChoiceField(choices=["instant", "rematerialise", "no"])


class ModelVersionsOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    versions = ModelVersionOutSerializer(many=True, help_text="newest first")


class ModelActivatedOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField()
    previous_version = serializers.IntegerField(allow_null=True)
    status = serializers.ChoiceField(choices=[VersionStatus.ACTIVE.value])


class ModelActivationQueuedOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    version = serializers.IntegerField()
    status = serializers.ChoiceField(choices=[VersionStatus.MATERIALISING.value])


class PopularityReleaseOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    epsilon = serializers.FloatField()
    delta = serializers.FloatField()
    sigma = serializers.FloatField(help_text="the Gaussian noise's standard deviation")
    cap = serializers.IntegerField(help_text="events counted per user at most")
    users = serializers.IntegerField()
    items = serializers.IntegerField()

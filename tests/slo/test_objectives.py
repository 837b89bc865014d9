"""Objectives: sensible defaults, editable per tenant and endpoint class, validated, audited, isolated."""

from __future__ import annotations

from typing import Any

import pytest

from apps.core.errors import DomainError
from apps.slo.selectors import slo_objectives_for_tenant
from apps.slo.services import slo_objective_reset, slo_objective_set


def test_every_class_starts_with_the_default_objective(tenant_a):
    objectives = slo_objectives_for_tenant(tenant_id=tenant_a.tenant.id)
    assert set(objectives) == {"recommend", "search", "ingest", "ingest_batch", "other"}
    assert all(o.is_default for o in objectives.values())
    rec = objectives["recommend"]
    assert (rec.latency_threshold_ms, rec.latency_target, rec.availability_target) == (50.0, 0.99, 0.999)
    # a batch of up to 1000 records gets five times the single-write allowance
    assert (
        objectives["ingest_batch"].latency_threshold_ms == 1000.0
        and objectives["ingest"].latency_threshold_ms == 200.0
    )


def test_an_admin_sets_an_objective_and_the_change_is_audited(tenant_a, admin_a, audit_calls):
    actor = f"user:{admin_a.pk}"
    result = slo_objective_set(
        tenant_id=tenant_a.tenant.id,
        endpoint_class="search",
        latency_threshold_ms=80.0,
        latency_target=0.995,
        availability_target=0.9995,
        actor=actor,
    )
    assert (result.latency_threshold_ms, result.latency_target, result.availability_target) == (
        80.0,
        0.995,
        0.9995,
    )
    assert result.is_default is False and result.updated_by == actor
    assert slo_objectives_for_tenant(tenant_id=tenant_a.tenant.id)["search"] == result
    (call,) = [c for c in audit_calls if c["action"] == "slo.objective.set"]
    assert (
        call["tenant_id"] == tenant_a.tenant.id and call["actor"] == actor and call["target_id"] == "search"
    )
    assert call["details"]["before"]["latency_threshold_ms"] == "100"
    assert call["details"]["after"] == {
        "latency_threshold_ms": "80",
        "latency_target": "0.995",
        "availability_target": "0.9995",
    }


def test_setting_twice_updates_in_place_and_reset_returns_to_the_default(tenant_a, audit_calls):
    tid = tenant_a.tenant.id
    slo_objective_set(
        tenant_id=tid,
        endpoint_class="ingest",
        latency_threshold_ms=300.0,
        latency_target=0.99,
        availability_target=0.999,
        actor="t",
    )
    slo_objective_set(
        tenant_id=tid,
        endpoint_class="ingest",
        latency_threshold_ms=400.0,
        latency_target=0.99,
        availability_target=0.999,
        actor="t",
    )
    assert slo_objectives_for_tenant(tenant_id=tid)["ingest"].latency_threshold_ms == 400.0
    back = slo_objective_reset(tenant_id=tid, endpoint_class="ingest", actor="t")
    assert back.is_default and back.latency_threshold_ms == 200.0
    assert [c["action"] for c in audit_calls] == [
        "slo.objective.set",
        "slo.objective.set",
        "slo.objective.reset",
    ]


def test_one_tenant_s_objective_is_not_another_s(tenant_a, tenant_b):
    slo_objective_set(
        tenant_id=tenant_a.tenant.id,
        endpoint_class="recommend",
        latency_threshold_ms=20.0,
        latency_target=0.9,
        availability_target=0.99,
        actor="t",
    )
    assert slo_objectives_for_tenant(tenant_id=tenant_b.tenant.id)["recommend"].is_default


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("endpoint_class", "everything"),
        ("latency_threshold_ms", 0.0),
        ("latency_threshold_ms", -5.0),
        ("latency_threshold_ms", 700_000.0),
        ("latency_target", 1.0),  # no budget left to burn
        ("latency_target", 0.2),
        ("availability_target", 99.9),  # a percentage, not a share
    ],
)
def test_nonsense_objectives_are_refused_with_the_field_named(tenant_a, audit_calls, field, value):
    args: dict[str, Any] = {
        "endpoint_class": "recommend",
        "latency_threshold_ms": 50.0,
        "latency_target": 0.99,
        "availability_target": 0.999,
    }
    args[field] = value
    with pytest.raises(DomainError) as caught:
        slo_objective_set(tenant_id=tenant_a.tenant.id, actor="t", **args)
    assert field in caught.value.details
    assert slo_objectives_for_tenant(tenant_id=tenant_a.tenant.id)["recommend"].is_default
    assert audit_calls == []

"""A tenant's settings as one typed document: model design, retraining, privacy budget policy,
retention, rate limit and SLO objectives (``GET/PATCH /api/v1/tenant/settings``).

Each part is owned by its app and changed through that app's service (which validates and audits);
this module only composes them. A PATCH is all or nothing: every part runs in one tenant-scoped
transaction, so a refusal of any part (400/409) leaves every setting as it was.
"""

from __future__ import annotations

from typing import Any

from apps.core.conf import sotto
from apps.core.errors import DomainError
from apps.core.tenant_db import tenant_context
from apps.modeling import budget as modeling_budget
from apps.modeling import lifecycle
from apps.modeling import selectors as modeling_selectors
from apps.modeling.run_config import DP_DESIGNS as MODELING_DP_DESIGNS
from apps.profiles.services import retention_days
from apps.slo.selectors import slo_objectives_for_tenant
from apps.slo.services import slo_objective_set
from apps.tenancy.models import Tenant
from apps.tenancy.services import tenant_update_settings

DP_DESIGNS = list(MODELING_DP_DESIGNS)


def tenant_settings_get(*, tenant_id: int) -> dict[str, Any]:
    with tenant_context(tenant_id):
        tenant = Tenant.objects.get(pk=tenant_id)
    settings = tenant.settings or {}
    budget = modeling_selectors.privacy_budget(tenant_id=tenant_id)
    rate = settings.get("rate_limit_per_s")
    return {
        "model": {"dp_design": str(settings.get("dp_design") or "auto")},
        "retraining": lifecycle.retrain_schedule_get(tenant_id=tenant_id),
        "privacy_budget": {
            "epsilon_total": budget["epsilon_total"],
            "delta": budget["delta"],
            "renewal_days": budget["renewal_days"],
            "operator_cap": budget["operator_cap"],
        },
        "retention": {"event_retention_days": retention_days(settings)},
        "rate_limit_per_s": rate if isinstance(rate, int | float) and not isinstance(rate, bool) else None,
        "rate_limit_default_per_s": sotto().rate_limit_per_s,
        "slo_objectives": {
            cls: {
                "latency_threshold_ms": o.latency_threshold_ms,
                "latency_target": o.latency_target,
                "availability_target": o.availability_target,
            }
            for cls, o in slo_objectives_for_tenant(tenant_id=tenant_id).items()
        },
    }


def _positive_number(raw: Any, name: str, *, upper: float) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < float(raw) <= upper:
        raise DomainError(
            f"{name} must be a number in (0, {upper:g}]", details={name: f"a number in (0, {upper:g}]"}
        )
    return float(raw)


def tenant_settings_update(*, tenant_id: int, changes: dict[str, Any], actor: str) -> dict[str, Any]:
    """Apply a validated partial document (see the module docstring); returns the settings after."""
    with tenant_context(tenant_id):
        tenant = Tenant.objects.select_for_update().get(pk=tenant_id)
        # the schedule row before the budget row: the order retrain_due takes them in (no deadlock)
        lifecycle.schedule_locked(tenant_id)
        plain: dict[str, Any] = {}
        if "model" in changes and "dp_design" in changes["model"]:
            design = changes["model"]["dp_design"]
            if design not in DP_DESIGNS:
                raise DomainError(
                    f"dp_design must be one of {DP_DESIGNS}", details={"dp_design": f"one of {DP_DESIGNS}"}
                )
            plain["dp_design"] = design
        if "retention" in changes and "event_retention_days" in changes["retention"]:
            days = changes["retention"]["event_retention_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
                raise DomainError(
                    "event_retention_days must be a whole number of days in [1, 36500]",
                    details={"event_retention_days": "an integer in [1, 36500]"},
                )
            plain["event_retention_days"] = days
        if "rate_limit_per_s" in changes:
            raw = changes["rate_limit_per_s"]
            # a tenant may lower its limit, never raise it above the operator's (it protects other tenants)
            cap = sotto().rate_limit_per_s
            plain["rate_limit_per_s"] = (
                None if raw is None else _positive_number(raw, "rate_limit_per_s", upper=cap)
            )
        # The budget first, then the schedule: a PATCH that changes both is checked once, on the
        # final pair (by retrain_schedule_set); a budget alone is checked against the schedule in place.
        budget = changes.get("privacy_budget") or {}
        schedule = changes.get("retraining") or {}
        if budget:
            modeling_budget.privacy_budget_set(
                tenant=tenant,
                actor=actor,
                check=None if schedule else lifecycle.schedule_check(tenant_id),
                **{k: budget[k] for k in ("epsilon_total", "delta", "renewal_days") if k in budget},
            )
        if schedule:
            lifecycle.retrain_schedule_set(
                tenant_id=tenant_id,
                actor=actor,
                cadence=schedule.get("cadence"),
                epsilon_per_run=schedule.get("epsilon_per_run"),
                min_new_events=schedule.get("min_new_events", ...),
            )
        for cls, objective in (changes.get("slo_objectives") or {}).items():
            current = slo_objectives_for_tenant(tenant_id=tenant_id).get(cls)
            if current is None:
                raise DomainError(f"unknown endpoint class {cls!r}", details={"slo_objectives": cls})
            slo_objective_set(
                tenant_id=tenant_id,
                endpoint_class=cls,
                actor=actor,
                latency_threshold_ms=objective.get("latency_threshold_ms", current.latency_threshold_ms),
                latency_target=objective.get("latency_target", current.latency_target),
                availability_target=objective.get("availability_target", current.availability_target),
            )
        if plain:
            tenant_update_settings(tenant=tenant, changes=plain, actor=actor)
    return tenant_settings_get(tenant_id=tenant_id)

"""A tenant's privacy budget: its policy (ε, δ cap, renewal window), and how much of it is spent.

What callers may rely on:

- :func:`privacy_budget_set` changes the policy with the budget row locked (``FOR UPDATE``) and
  audits it in the same transaction.
- :func:`budget_locked` is the one lock every charge takes (``ledger.ledger_charge``), so
  concurrent requests cannot both spend the last of a budget.
- ε values from a request go through :func:`parse_epsilon` (a positive finite JSON number).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction
from apps.core.conf import sotto
from apps.core.errors import DomainError
from apps.core.tenant_db import tenant_context
from apps.modeling.models import LedgerEntry, PrivacyBudget
from apps.modeling.selectors import budget_defaults, counting_entries
from apps.tenancy.models import Tenant

__all__ = [
    "EPSILON_TOLERANCE",
    "KEEP",
    "MIN_RELEASE_EPSILON",
    "budget_locked",
    "budget_spent",
    "parse_budget_total",
    "parse_delta",
    "parse_epsilon",
    "parse_renewal_days",
    "privacy_budget_set",
]

EPSILON_TOLERANCE = 1e-9  # a charge this much above what remains still fits (float sums of the ledger)
MIN_RELEASE_EPSILON = 1e-3  # below it a release is noise only, and endless tiny releases would add up δ


class _Keep:
    """Marker: leave this field of the budget policy as it is."""


KEEP: Any = _Keep()


def parse_epsilon(raw: Any, *, name: str = "epsilon") -> float:
    """A positive finite number (JSON number, not a string or boolean); ``DomainError`` (400) otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise DomainError(f"{name} must be a number", details={name: "must be a positive finite number"})
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise DomainError(
            f"{name} must be positive and finite, got {raw!r}",
            details={name: "must be a positive finite number"},
        )
    return value


def parse_budget_total(raw: Any) -> float:
    """ε of a budget: positive, finite and within the operator's ``MAX_EPSILON_TOTAL``."""
    eps = parse_epsilon(raw, name="epsilon_total")
    cap = sotto().max_epsilon_total
    if eps > cap:
        raise DomainError(
            f"epsilon_total {eps:g} is above the operator's cap of {cap:g}",
            details={"epsilon_total": f"must be at most {cap:g}"},
        )
    return eps


def parse_delta(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not (0 < float(raw) < 1):
        raise DomainError("delta must be a number in (0, 1)", details={"delta": "must be in (0, 1)"})
    return float(raw)


def parse_renewal_days(raw: Any) -> int | None:
    """``None`` (a lifetime budget) or whole days, at least the operator's ``MIN_RENEWAL_DAYS``."""
    if raw is None:
        return None
    low, high = sotto().min_renewal_days, 3650
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise DomainError(
            f"renewal_days must be null (a lifetime budget) or a whole number of days in [{low}, {high}]",
            details={"renewal_days": f"null or an integer in [{low}, {high}]"},
        )
    return int(raw)


def budget_locked(tenant_id: int) -> PrivacyBudget:
    """The tenant's budget row (created with the operator's defaults if missing), locked ``FOR UPDATE``
    in the caller's tenant-scoped transaction."""
    total, delta = budget_defaults()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO modeling_privacybudget (tenant_id, epsilon_total, delta, updated_at) "
            "VALUES (%s, %s, %s, now()) ON CONFLICT (tenant_id) DO NOTHING",
            [int(tenant_id), total, delta],
        )
    return PrivacyBudget.objects.select_for_update().get(tenant_id=tenant_id)


def budget_spent(tenant_id: int, budget: PrivacyBudget) -> float:
    """Σ ε of the charges that still count against ``budget`` (``selectors.charge_counts``)."""
    entries = list(LedgerEntry.objects.filter(tenant_id=tenant_id).only("created_at", "epsilon"))
    return float(sum(e.epsilon for e in counting_entries(entries, budget, timezone.now())))


def _carry(budget: PrivacyBudget, new_days: int | None) -> None:
    """Before the window shortens (or a lifetime budget starts renewing), keep every charge made so
    far counting under the longest window it was promised (``selectors.charge_counts``)."""
    if new_days is None:
        return  # to a lifetime budget: everything counts from now on, nothing is freed
    if budget.renewal_days is not None and new_days >= budget.renewal_days:
        return  # a longer window frees nothing
    longest = budget.renewal_days  # None: lifetime, the longest of all
    if budget.carry_before is not None and longest is not None:
        longest = None if budget.carry_days is None else max(longest, budget.carry_days)
    budget.carry_before, budget.carry_days = timezone.now(), longest


def privacy_budget_set(
    *,
    tenant: Tenant,
    actor: str,
    epsilon_total: Any = KEEP,
    delta: Any = KEEP,
    renewal_days: Any = KEEP,
    check: Callable[[PrivacyBudget], None] | None = None,
) -> PrivacyBudget:
    """Set the tenant's budget policy (audited); fields left as ``KEEP`` stay as they are.

    ε within the operator's cap; δ is the per-release cap; ``renewal_days`` None makes ε a lifetime
    budget, N makes it what any N-day window may spend. Lowering ε below what is spent is allowed:
    nothing more can be released until the window moves on. ``check`` (e.g. "the retraining
    schedule still fits") runs on the new policy inside the lock and may refuse it.
    """
    eps = None if epsilon_total is KEEP else parse_budget_total(epsilon_total)
    dlt = None if delta is KEEP else parse_delta(delta)
    days = KEEP if renewal_days is KEEP else parse_renewal_days(renewal_days)
    with tenant_context(tenant.pk):
        budget = budget_locked(tenant.pk)
        before = {
            "epsilon_total": repr(budget.epsilon_total),
            "delta": repr(budget.delta),
            "renewal_days": budget.renewal_days,
        }
        if eps is not None:
            budget.epsilon_total = eps
        if dlt is not None:
            budget.delta = dlt
        if days is not KEEP and days != budget.renewal_days:
            _carry(budget, days)
            budget.renewal_days = days
        if check is not None:
            check(budget)
        budget.updated_at = timezone.now()
        budget.save(
            update_fields=[
                "epsilon_total",
                "delta",
                "renewal_days",
                "carry_before",
                "carry_days",
                "updated_at",
            ]
        )
        audit.record(
            tenant_id=tenant.pk,
            actor=actor,
            action=AuditAction.PRIVACY_BUDGET_SET,
            target_type="tenant",
            target_id=str(tenant.pk),
            details={
                "epsilon_total": repr(budget.epsilon_total),
                "delta": repr(budget.delta),
                "renewal_days": budget.renewal_days,
                "previous": before,
            },
        )
    return budget

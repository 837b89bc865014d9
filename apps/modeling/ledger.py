"""The append-only privacy ledger: charges, what each release ran, and refunds.

What callers may rely on:

- Every release of something learned from interactions (a training run, a popularity release) is
  charged *before* it is computed: :func:`ledger_charge` locks the tenant's budget row
  (``budget.budget_locked``), refuses what does not fit (``Conflict`` 409, nothing written), and
  the caller writes the entry with :meth:`Charge.record` in the same transaction as the row that
  describes the release. δ of a release is ``min(tenant δ, 1/N_users)`` with N_users counted at
  request time. With a renewal window only the charges that still count do
  (``selectors.charge_counts``).
- :func:`ledger_mechanism_record` writes what a charged release actually ran (at most once per
  entry); every ledger row is built here, nowhere else.

Refunds: a training run is charged before it starts (the web process cannot run the accountant). If it
then fails (its worker was killed, it raised, or its switch rolled back), nothing computed from
the tenant's data left the worker: no served vectors, no popularity release, no ledger mechanism
(holdout metrics and the training loss are outside the guarantee for every run, docs/privacy-model.md).
A DP guarantee is about what is released, so that ε was never spent, and
keeping it charged would only shrink what the tenant can still use. The refund is a new entry
(the ledger is append-only): kind ``refund``, the negative ε and δ of the charge, dated like the
charge so that a renewal window counts both or neither, written in the transaction that marks
the run failed. Every sum over the ledger (spent, remaining, lifetime, the chart) nets it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apps.core import audit
from apps.core.audit import AuditAction
from apps.core.errors import Conflict, DomainError, ErrorCode
from apps.modeling import tenant_data
from apps.modeling.budget import EPSILON_TOLERANCE, MIN_RELEASE_EPSILON, budget_locked, budget_spent
from apps.modeling.models import (
    LedgerEntry,
    LedgerMechanism,
    ModelVersion,
    ReleaseKind,
    TrainingRun,
    VersionStatus,
)

__all__ = [
    "Charge",
    "ledger_charge",
    "ledger_mechanism_record",
    "ledger_refund_unreleased",
    "run_charge",
    "training_run_failed_record",
]


@dataclass(frozen=True)
class Charge:
    """A release the budget has room for (:func:`ledger_charge`); :meth:`record` writes its entry."""

    tenant_id: int
    kind: str
    epsilon: float
    delta: float  # min(tenant δ, 1/N_users)
    users: int
    remaining: float  # ε the budget had left before this charge
    actor: str

    def record(self, *, details: dict[str, Any], run: TrainingRun | None = None) -> LedgerEntry:
        """The ledger entry of this charge (the caller's transaction, still holding the budget lock)."""
        return _entry_create(
            tenant_id=self.tenant_id,
            kind=self.kind,
            run_id=run.pk if run else None,
            epsilon=self.epsilon,
            delta=self.delta,
            users=self.users,
            actor=self.actor,
            details=details,
        )


def _entry_create(
    *,
    tenant_id: int,
    kind: str,
    run_id: int | None,
    epsilon: float,
    delta: float,
    users: int,
    actor: str,
    details: dict[str, Any],
    created_at: datetime | None = None,
) -> LedgerEntry:
    dated = {} if created_at is None else {"created_at": created_at}
    return LedgerEntry.objects.create(
        tenant_id=tenant_id,
        kind=kind,
        run_id=run_id,
        epsilon=epsilon,
        delta=delta,
        users=users,
        actor=actor[:200],
        details=details,
        **dated,
    )


def ledger_charge(*, tenant_id: int, epsilon: float, kind: str, actor: str, min_users: int) -> Charge:
    """Lock the budget and refuse what does not fit; nothing is written (see the module docstring).

    ``DomainError`` (400) below ``MIN_RELEASE_EPSILON``; ``Conflict`` (409) over what remains
    (``budget_exceeded``) or with fewer than ``min_users`` users (trainable users for a training
    run, users with events for a popularity release)."""
    if epsilon < MIN_RELEASE_EPSILON:
        raise DomainError(
            f"ε {epsilon:g} is below the smallest release of {MIN_RELEASE_EPSILON:g}",
            details={"epsilon": f"at least {MIN_RELEASE_EPSILON:g}"},
        )
    budget = budget_locked(tenant_id)
    spent = budget_spent(tenant_id, budget)
    remaining = max(0.0, budget.epsilon_total - spent)
    if epsilon > remaining + EPSILON_TOLERANCE:
        window = "" if budget.renewal_days is None else f" in the last {budget.renewal_days} days"
        raise Conflict(
            f"ε {epsilon:g} exceeds the remaining privacy budget {remaining:g} "
            f"(total {budget.epsilon_total:g}, spent {spent:g}{window}); nothing was released",
            code=ErrorCode.BUDGET_EXCEEDED,
            details={
                "epsilon_requested": epsilon,
                "epsilon_remaining": remaining,
                "epsilon_total": budget.epsilon_total,
                "epsilon_spent": spent,
                "renewal_days": budget.renewal_days,
            },
        )
    if kind == ReleaseKind.TRAINING:
        users = tenant_data.trainable_users(tenant_id)
    else:
        users = tenant_data.event_users(tenant_id)
    if users < min_users:
        raise Conflict(
            f"{users} users have usable events; a {kind} release needs at least {min_users}",
            code=ErrorCode.NOT_ENOUGH_USERS,
            details={"users": users, "minimum": min_users},
        )
    return Charge(
        tenant_id=tenant_id,
        kind=kind,
        epsilon=epsilon,
        delta=min(budget.delta, 1.0 / users),
        users=users,
        remaining=remaining,
        actor=actor,
    )


def ledger_mechanism_record(
    *,
    entry: LedgerEntry,
    epsilon: float,
    delta: float,
    users: int,
    accountant: str,
    details: dict[str, Any],
    noise_multiplier: float | None = None,
    sample_rate: float | None = None,
    epochs: int | None = None,
    steps: int | None = None,
    clip_norm: float | None = None,
) -> LedgerMechanism:
    """What a charged release actually ran (caller's transaction); a second record of one entry is
    refused by the database (one-to-one)."""
    return LedgerMechanism.objects.create(
        tenant_id=entry.tenant_id,
        entry=entry,
        epsilon=epsilon,
        delta=delta,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        epochs=epochs,
        steps=steps,
        clip_norm=clip_norm,
        users=users,
        accountant=accountant[:64],
        details=details,
    )


def run_charge(*, tenant_id: int, run_id: int) -> LedgerEntry | None:
    """The training charge of a run (one per run), if any."""
    return LedgerEntry.objects.filter(tenant_id=tenant_id, run_id=run_id, kind=ReleaseKind.TRAINING).first()


# versions a failing run may leave behind: never served (a run that is not done cannot be activated)
_UNRELEASED_VERSIONS = (VersionStatus.MATERIALISING, VersionStatus.READY, VersionStatus.FAILED)


def ledger_refund_unreleased(*, tenant_id: int, run_id: int, reason: str, actor: str) -> float:
    """Refund the charge of a failed run that released nothing; returns the ε given back (0.0 if none).

    Call inside the transaction (tenant-scoped) that marks the run failed, after the UPDATE of the run's
    row (the ledger is INSERT/SELECT only, so the run's row lock is what serialises). Idempotent: a charge is
    refunded at most once. Nothing is refunded when the run recorded a mechanism or left a version
    that was ever served or kept (``ready``, ``active``, ``rejected``, ``retired``...).
    """
    # the caller has just updated (so locked) the run's row: concurrent refunds of one run serialise there
    charge = run_charge(tenant_id=tenant_id, run_id=run_id)
    if charge is None:
        return 0.0
    if LedgerEntry.objects.filter(tenant_id=tenant_id, run_id=run_id, kind=ReleaseKind.REFUND).exists():
        return 0.0
    if LedgerMechanism.objects.filter(tenant_id=tenant_id, entry=charge).exists():
        return 0.0
    if (
        ModelVersion.objects.filter(tenant_id=tenant_id, run_id=run_id)
        .exclude(status__in=_UNRELEASED_VERSIONS)
        .exists()
    ):
        return 0.0
    _entry_create(
        tenant_id=tenant_id,
        kind=ReleaseKind.REFUND,
        run_id=run_id,
        epsilon=-charge.epsilon,
        delta=-charge.delta,
        users=charge.users,
        created_at=charge.created_at,
        actor=actor,
        details={
            "refund_of": charge.pk,
            "reason": reason[:200],
            "why": "the run failed before releasing anything computed from the tenant's data",
        },
    )
    audit.record(
        tenant_id=tenant_id,
        actor=actor,
        action=AuditAction.PRIVACY_BUDGET_REFUND,
        target_type="training_run",
        target_id=str(run_id),
        details={"epsilon": repr(charge.epsilon), "delta": repr(charge.delta), "reason": reason[:200]},
    )
    return float(charge.epsilon)


def training_run_failed_record(*, tenant_id: int, run_id: int, reason: str, actor: str) -> float:
    """What every failure path owes once it has marked the run failed, in the same transaction: the
    ``training_run.failed`` audit row and the refund of a run that released nothing. Returns the ε
    given back."""
    audit.record(
        tenant_id=tenant_id,
        actor=actor,
        action=AuditAction.TRAINING_RUN_FAILED,
        target_type="training_run",
        target_id=str(run_id),
        details={"reason": reason[:200]},
    )
    return ledger_refund_unreleased(tenant_id=tenant_id, run_id=run_id, reason=reason, actor=actor)

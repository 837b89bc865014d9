"""Refunds on the append-only privacy ledger: a reversing entry for a run that released nothing.

A training run is charged before it starts (the web process cannot run the accountant). If it
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

from apps.core import audit
from apps.core.audit import AuditAction
from apps.modeling.models import LedgerEntry, LedgerMechanism, ModelVersion, ReleaseKind, VersionStatus

__all__ = ["ledger_refund_unreleased", "training_run_failed_record"]

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
    charge = LedgerEntry.objects.filter(tenant_id=tenant_id, run_id=run_id, kind=ReleaseKind.TRAINING).first()
    if charge is None:
        return 0.0
    if LedgerEntry.objects.filter(tenant_id=tenant_id, run_id=run_id, kind=ReleaseKind.REFUND).exists():
        return 0.0
    if LedgerMechanism.objects.filter(tenant_id=tenant_id, entry=charge).exists():
        return 0.0
    if ModelVersion.objects.filter(tenant_id=tenant_id, run_id=run_id).exclude(status__in=_UNRELEASED_VERSIONS).exists():
        return 0.0
    LedgerEntry.objects.create(
        tenant_id=tenant_id, kind=ReleaseKind.REFUND, run_id=run_id, epsilon=-charge.epsilon, delta=-charge.delta,
        users=charge.users, created_at=charge.created_at, actor=actor[:200],
        details={"refund_of": charge.pk, "reason": reason[:200],
                 "why": "the run failed before releasing anything computed from the tenant's data"},
    )
    audit.record(tenant_id=tenant_id, actor=actor, action=AuditAction.PRIVACY_BUDGET_REFUND, target_type="training_run",
                 target_id=str(run_id), details={"epsilon": repr(charge.epsilon), "delta": repr(charge.delta),
                                                 "reason": reason[:200]})
    return float(charge.epsilon)


def training_run_failed_record(*, tenant_id: int, run_id: int, reason: str, actor: str) -> float:
    """What every failure path owes once it has marked the run failed, in the same transaction: the
    ``training_run.failed`` audit row and the refund of a run that released nothing. Returns the ε
    given back."""
    audit.record(tenant_id=tenant_id, actor=actor, action=AuditAction.TRAINING_RUN_FAILED, target_type="training_run",
                 target_id=str(run_id), details={"reason": reason[:200]})
    return ledger_refund_unreleased(tenant_id=tenant_id, run_id=run_id, reason=reason, actor=actor)

"""Modeling reads: what serving calls on the hot path, and what the API and the admin show.

Serving contract (docs/modeling.md):

- :func:`serving_model` → the tenant's active :class:`ServingModel` or None. Per call at most one
  indexed pointer read (cached per process for ``MODELING_POINTER_TTL_S``, default 1 s); weights
  are loaded once per (tenant, version) per process and verified against their SHA-256.
- :func:`served_knn` → HNSW top-k over exactly that version's served item vectors. Pass the
  ``version`` of the :class:`ServingModel` the user vector came from: the previous version's
  vectors are kept after a switch, so a request that read the pointer just before a switch still
  finds its own version's vectors.
- :func:`popular_items` → the latest DP popularity release, [] when none was released.

Each joins the caller's transaction (which must be scoped to the tenant, as every
``TenantAPIView`` request is) or opens a tenant-scoped one. Nothing here imports torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection
from django.utils import timezone

from apps.core.conf import sotto
from apps.core.errors import NotFound
from apps.core.hnsw import Neighbour
from apps.core.tenant_db import tenant_scope
from apps.modeling import progress as stages
from apps.modeling import served
from apps.modeling.artifacts import ServingModel, load_artifacts
from apps.modeling.models import (
    ActiveModel,
    LedgerEntry,
    LedgerMechanism,
    ModelVersion,
    PrivacyBudget,
    ReleaseKind,
    RunStatus,
    TrainingRun,
)

__all__ = [
    "ServingModel",
    "active_model_info",
    "latest_evaluation",
    "popular_items",
    "privacy_budget",
    "privacy_spend_series",
    "served_knn",
    "serving_model",
    "training_run_get",
    "training_runs_for_tenant",
]


# --- serving -----------------------------------------------------------------------------------

_pointer_lock = threading.Lock()
_pointers: dict[int, tuple[float, int | None]] = {}


def clear_pointer_cache() -> None:
    with _pointer_lock:
        _pointers.clear()


def active_version(tenant_id: int) -> int | None:
    """The active version number (pointer cache, else one indexed read)."""
    ttl = sotto().modeling_pointer_ttl_s
    now = time.monotonic()
    if ttl > 0:
        with _pointer_lock:
            hit = _pointers.get(int(tenant_id))
        if hit is not None and hit[0] > now:
            return hit[1]
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute("SELECT version FROM modeling_activemodel WHERE tenant_id = %s", [int(tenant_id)])
        row = cursor.fetchone()
    version = None if row is None else int(row[0])
    if ttl > 0:
        with _pointer_lock:
            _pointers[int(tenant_id)] = (now + ttl, version)
    return version


def serving_model(tenant_id: int) -> ServingModel | None:
    """The tenant's active model (numpy weights), or None before its first successful training run."""
    version = active_version(tenant_id)
    if version is None:
        return None
    with tenant_scope(tenant_id):
        return load_artifacts(tenant_id, version).model


def served_knn(
    *,
    tenant_id: int,
    version: int,
    vector: np.ndarray,
    k: int,
    exclude_pks: Iterable[int] = (),
    category: str | None = None,
    available_only: bool = True,
) -> list[Neighbour]:
    """``[(item_pk, external_id, cosine)]`` best first, from this version's HNSW index in the
    tenant's partition; iterative scan when filters apply. [] if the version has no vectors."""
    with tenant_scope(tenant_id):
        return served.vectors_knn(
            tenant_id=tenant_id,
            version=version,
            vector=vector,
            k=k,
            exclude_pks=exclude_pks,
            category=category,
            available_only=available_only,
        )


_POPULAR = """
SELECT p.item_id, i.external_id, p.score
FROM modeling_popularityscore p JOIN catalog_item i ON i.id = p.item_id
WHERE p.tenant_id = %s AND i.tenant_id = %s AND i.available AND p.score > 0
  AND p.release_id = (SELECT id FROM modeling_popularityrelease WHERE tenant_id = %s
                      ORDER BY created_at DESC, id DESC LIMIT 1)
"""


def popular_items(
    *, tenant_id: int, k: int, exclude_pks: Iterable[int] = (), category: str | None = None
) -> list[Neighbour]:
    """``[(item_pk, external_id, noisy count)]`` of the latest DP popularity release, best first.

    Ranking noisy counts is post-processing of a (ε, δ)-DP release, so this costs no budget. No
    release yet → [] (serving then answers with the newest items); a release is never made implicitly here.
    Only available items with a positive noisy count are returned.
    """
    if k < 1:
        return []
    sql = _POPULAR
    params: list[Any] = [int(tenant_id)] * 3
    if category is not None:
        sql += " AND i.categories @> ARRAY[%s]::varchar[]"
        params.append(category)
    excluded = sorted({int(pk) for pk in exclude_pks})
    if excluded:
        sql += " AND p.item_id <> ALL(%s::bigint[])"
        params.append(excluded)
    sql += " ORDER BY p.score DESC, p.item_id LIMIT %s"
    params.append(int(k))
    with tenant_scope(tenant_id), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [Neighbour(int(pk), str(ext), float(score)) for pk, ext, score in cursor.fetchall()]


def active_model_info(*, tenant_id: int) -> dict[str, Any] | None:
    """Pointer row: active and previous version, when it switched (None before the first model)."""
    with tenant_scope(tenant_id):
        row = (
            ActiveModel.objects.filter(tenant_id=tenant_id)
            .values("version", "previous_version", "switched_at")
            .first()
        )
    return dict(row) if row else None


# --- privacy budget ----------------------------------------------------------------------------


def budget_defaults() -> tuple[float, float]:
    return sotto().default_epsilon_total, sotto().default_delta


def _mechanism_label(entry: LedgerEntry, mech: LedgerMechanism | None, refunded: bool) -> str:
    if entry.kind == ReleaseKind.REFUND:
        return f"refund of entry {(entry.details or {}).get('refund_of')}: nothing was released"
    if refunded:
        return "none: the run failed before releasing anything (refunded)"
    return "pending" if mech is None else str((mech.details or {}).get("mechanism", ""))


def _entry_repr(entry: LedgerEntry, mech: LedgerMechanism | None, refunded: bool = False) -> dict[str, Any]:
    planned = entry.details or {}
    return {
        "id": entry.pk,
        "created_at": entry.created_at,
        "kind": entry.kind,
        "run_id": entry.run_id,
        "epsilon": entry.epsilon,
        "delta": entry.delta,
        "users": entry.users if mech is None else mech.users,
        "noise_multiplier": None if mech is None else mech.noise_multiplier,
        "sampling_rate": (mech.sample_rate if mech is not None else planned.get("sample_rate")),
        "epochs": (mech.epochs if mech is not None else planned.get("epochs")),
        "steps": None if mech is None else mech.steps,
        "clip_norm": (mech.clip_norm if mech is not None else planned.get("clip_norm")),
        "accountant": (mech.accountant if mech is not None else planned.get("accountant")) or None,
        "epsilon_accounted": None if mech is None else mech.epsilon,
        "delta_used": None if mech is None else mech.delta,
        "mechanism": _mechanism_label(entry, mech, refunded),
        "refunded": refunded,
        "details": {**planned, **({} if mech is None else mech.details)},
    }


def charge_counts(
    created_at: datetime,
    *,
    now: datetime,
    renewal_days: int | None,
    carry_before: datetime | None = None,
    carry_days: int | None = None,
) -> bool:
    """Whether a charge made at ``created_at`` still counts against the budget at ``now``.

    Lifetime budget: always. Renewal window D: while it is younger than D days, or, if it was made
    before the window was last shortened (``carry_before``), younger than the longest window that
    applied to it then (``carry_days``; None: for ever). The one rule for charging and for display.
    """
    if renewal_days is None or created_at > now - timedelta(days=renewal_days):
        return True
    if carry_before is not None and created_at <= carry_before:
        return carry_days is None or created_at > now - timedelta(days=carry_days)
    return False


def counting_entries(entries: list[Any], budget: Any, now: datetime) -> list[Any]:
    """The ledger entries (with ``created_at``) that count against ``budget`` (a ``PrivacyBudget`` or None)."""
    if budget is None:
        return list(entries)
    return [
        e
        for e in entries
        if charge_counts(
            e.created_at,
            now=now,
            renewal_days=budget.renewal_days,
            carry_before=budget.carry_before,
            carry_days=budget.carry_days,
        )
    ]


def privacy_budget(*, tenant_id: int, now: datetime | None = None) -> dict[str, Any]:
    """The budget policy and its state now: total, spent and remaining (the charges that still count:
    all of them for a lifetime budget, those in the renewal window otherwise), when ε next comes back
    and how much, δ, and every ledger entry oldest first.

    A tenant with no budget row yet reads as the platform defaults with nothing spent.
    """
    now = now or timezone.now()
    with tenant_scope(tenant_id):
        budget = PrivacyBudget.objects.filter(tenant_id=tenant_id).first()
        entries = list(LedgerEntry.objects.filter(tenant_id=tenant_id).order_by("created_at", "id"))
        mechs = {m.entry_id: m for m in LedgerMechanism.objects.filter(tenant_id=tenant_id)}
    total, delta = (budget.epsilon_total, budget.delta) if budget else budget_defaults()
    days = budget.renewal_days if budget else None
    refunded = {(e.details or {}).get("refund_of") for e in entries if e.kind == ReleaseKind.REFUND}
    counting = counting_entries(entries, budget, now)
    spent = float(sum(e.epsilon for e in counting))
    # the next moment a counting charge stops counting, and how much comes back then
    leaves = []
    if budget is not None and days is not None:
        for e in counting:
            held = (
                days
                if budget.carry_before is None or e.created_at > budget.carry_before
                else budget.carry_days
            )
            if held is not None:
                leaves.append((e.created_at + timedelta(days=max(days, held)), e.epsilon))
    # a refund is dated like its charge, so the two leave the window together and net out
    by_time: dict[datetime, float] = {}
    for t, eps in leaves:
        by_time[t] = by_time.get(t, 0.0) + eps
    next_at = min((t for t, eps in by_time.items() if eps > 1e-12), default=None)
    returning = by_time.get(next_at, 0.0) if next_at is not None else 0.0
    if days is None:
        composition = "basic (sums of ε and δ over releases); a lifetime budget that never renews"
    else:
        composition = (
            f"basic composition within any {days}-day window (at most ε_total); a user present for "
            f"T days is covered by (⌊T/{days}⌋ + 1)·ε_total"
        )
    return {
        "policy": "lifetime" if days is None else "rolling",
        "renewal_days": days,
        "window_start": None if days is None else now - timedelta(days=days),
        "epsilon_total": total,
        "epsilon_spent": spent,
        "epsilon_remaining": max(0.0, total - spent),
        "epsilon_spent_lifetime": float(sum(e.epsilon for e in entries)),
        "next_renewal_at": next_at,
        "epsilon_renewed_then": returning,
        "operator_cap": {
            "epsilon_total_max": sotto().max_epsilon_total,
            "renewal_days_min": sotto().min_renewal_days,
        },
        "delta": delta,
        "delta_spent": float(sum(e.delta for e in entries)),
        "composition": composition,
        "ledger": [_entry_repr(e, mechs.get(e.pk), e.pk in refunded) for e in entries],
    }


def privacy_spend_series(tenant_id: int) -> list[dict[str, Any]]:
    """Cumulative ε spent, one point per charged release (for the dashboard chart)."""
    with tenant_scope(tenant_id):
        rows = list(
            LedgerEntry.objects.filter(tenant_id=tenant_id)
            .order_by("created_at", "id")
            .values_list("created_at", "epsilon", "kind", "run_id")
        )
    out: list[dict[str, Any]] = []
    total = 0.0
    for created, eps, kind, run_id in rows:
        total += float(eps)
        out.append(
            {
                "created_at": created,
                "epsilon": float(eps),
                "cumulative": total,
                "kind": kind,
                "run_id": run_id,
            }
        )
    return out


# --- training runs -----------------------------------------------------------------------------


def _progress(run: TrainingRun) -> float:
    """Monotone fraction in [0, 1] from the stored stage and epoch (``progress.run_progress``)."""
    return stages.run_progress(str(run.status), run.stage, run.epoch, run.epochs)


def _stage(run: TrainingRun) -> str:
    return run.stage or (stages.QUEUED if run.status == RunStatus.QUEUED else "")


def run_repr(run: TrainingRun, version: int | None = None) -> dict[str, Any]:
    """The API's and the admin's view of a run."""
    return {
        "id": run.pk,
        "status": str(run.status),
        "epsilon": run.epsilon,
        "delta": run.delta,
        "progress": _progress(run),
        "stage": _stage(run),
        "epoch": run.epoch,
        "epochs": run.epochs,
        "loss": run.loss,
        "created_at": run.created_at,
        "started_at": run.started_at,
        "heartbeat_at": run.heartbeat_at,
        "finished_at": run.finished_at,
        "users": run.n_users_trained if run.n_users_trained is not None else run.n_users,
        "epsilon_spent": run.epsilon_spent,
        "epsilon_sgd": run.epsilon_sgd,
        "epsilon_pop": run.epsilon_pop,
        "delta_used": run.delta_used,
        "metrics": run.metrics or {},
        "model_version": version,
        "error": run.error,
        # what ran (after the run) or is planned (before): never a generic name
        "design": (run.release or {}).get("design") or run.config.get("dp_design"),
        "mechanism": (run.release or {}).get("mechanism") or _planned_mechanism_name(run.config),
        "release": run.release or {},
        "gate": run.gate or {},
    }


def _planned_mechanism_name(config: dict[str, Any]) -> str:
    if config.get("dp_design") == "factors":
        return "planned: gaussian popularity + gaussian item-item gram (DP PureSVD), no DP-SGD"
    return "planned: gaussian popularity + DP-SGD (Opacus) of the public-feature two-tower"


def _versions(tenant_id: int, runs: list[TrainingRun]) -> dict[int, int]:
    ids = [r.model_version_id for r in runs if r.model_version_id is not None]
    if not ids:
        return {}
    return dict(ModelVersion.objects.filter(tenant_id=tenant_id, pk__in=ids).values_list("pk", "version"))


def training_runs_for_tenant(*, tenant_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The tenant's runs, newest first."""
    with tenant_scope(tenant_id):
        runs = list(
            TrainingRun.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")[: max(1, limit)]
        )
        versions = _versions(tenant_id, runs)
    return [run_repr(r, versions.get(r.model_version_id or -1)) for r in runs]


def training_run_get(*, tenant_id: int, run_id: int) -> dict[str, Any]:
    """One run of this tenant; ``NotFound`` for another tenant's run exactly as for none."""
    with tenant_scope(tenant_id):
        run = TrainingRun.objects.filter(tenant_id=tenant_id, pk=run_id).first()
        if run is None:
            raise NotFound(f"no training run {run_id}")
        versions = _versions(tenant_id, [run])
    return run_repr(run, versions.get(run.model_version_id or -1))


def latest_evaluation(tenant_id: int) -> dict[str, Any] | None:
    """Offline metrics of the newest model version that has any (holdout of its own data)."""
    with tenant_scope(tenant_id):
        row = (
            ModelVersion.objects.filter(tenant_id=tenant_id)
            .exclude(metrics={})
            .order_by("-version")
            .values("version", "run_id", "created_at", "metrics", "status")
            .first()
        )
    if row is None:
        return None
    created: datetime = row["created_at"]
    return {
        "model_version": row["version"],
        "run_id": row["run_id"],
        "created_at": created,
        "status": row["status"],
        "metrics": row["metrics"],
    }


# --- model versions ------------------------------------------------------------------------------


def model_versions(*, tenant_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The tenant's stored versions, newest first: status, what ran, its ε, holdout metrics, the gate's
    verdict, and whether serving can switch to it at once (its served vectors exist)."""
    with tenant_scope(tenant_id):
        versions = list(
            ModelVersion.objects.filter(tenant_id=tenant_id)
            .order_by("-version")
            .defer("blob")[: max(1, limit)]
        )
        runs = {
            r.pk: r
            for r in TrainingRun.objects.filter(
                tenant_id=tenant_id, pk__in=[v.run_id for v in versions if v.run_id is not None]
            )
        }
    out: list[dict[str, Any]] = []
    for v in versions:
        run = runs.get(v.run_id) if v.run_id is not None else None
        release = (run.release or {}) if run else {}
        metrics = v.metrics or {}
        out.append(
            {
                "version": v.version,
                "status": str(v.status),
                "created_at": v.created_at,
                "activated_at": v.activated_at,
                "run_id": v.run_id,
                "design": release.get("design") or (v.model_config or {}).get("dp_design"),
                "mechanism": release.get("mechanism"),
                "mechanisms": release.get("mechanisms", []),
                "epsilon_spent": run.epsilon_spent if run else None,
                "metrics": {
                    k: metrics[k]
                    for k in (
                        "recall@20_capped",
                        "ndcg@10",
                        "dp_popularity_recall@20_capped",
                        "active_recall@20_capped",
                        "users_evaluated",
                    )
                    if k in metrics
                },
                "gate": (run.gate or {}) if run else {},
                "n_items": v.n_items,
                "item_dim": v.item_dim,
                "switch": "instant"
                if v.status in ("active", "previous")
                else ("rematerialise" if v.status in ("retired", "rejected") else "no"),
            }
        )
    return out

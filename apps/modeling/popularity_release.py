"""DP item popularity released on request (``POST /api/v1/popularity-releases``) and stored for serving.

What callers may rely on: :func:`popularity_release_create` charges ε to the ledger before it
computes anything (``ledger.ledger_charge``, refused like a training run when over budget), then
releases (ε, δ)-DP capped counts (``ml.popularity.dp_popularity``) and records the mechanism,
the scores and an audit row in the same tenant-scoped transaction. :func:`popularity_release_store`
also stores the popularity release of a training run (``training``).
"""

from __future__ import annotations

import secrets
from typing import Any

import numpy as np

from apps.core import audit
from apps.core.audit import AuditAction
from apps.core.conf import sotto
from apps.core.tenant_db import tenant_context
from apps.modeling import tenant_data
from apps.modeling.budget import parse_epsilon
from apps.modeling.ledger import ledger_charge, ledger_mechanism_record
from apps.modeling.models import LedgerEntry, PopularityRelease, PopularityScore, ReleaseKind, TrainingRun

__all__ = ["popularity_release_create", "popularity_release_store"]


def popularity_release_store(
    *,
    tenant_id: int,
    entry: LedgerEntry,
    run: TrainingRun | None,
    item_pks: np.ndarray,
    counts: np.ndarray,
    epsilon: float,
    delta: float,
    sigma: float,
    cap: int,
    n_users: int,
) -> PopularityRelease:
    """Store a computed release (caller's tenant-scoped transaction); scores > 0 only."""
    release = PopularityRelease.objects.create(
        tenant_id=tenant_id,
        entry=entry,
        run=run,
        epsilon=epsilon,
        delta=delta,
        sigma=sigma,
        cap=cap,
        n_users=n_users,
        n_items=len(item_pks),
    )
    keep = np.flatnonzero(counts > 0)
    PopularityScore.objects.bulk_create(
        [
            PopularityScore(
                tenant_id=tenant_id, release=release, item_id=int(item_pks[i]), score=float(counts[i])
            )
            for i in keep
        ],
        batch_size=2000,
    )
    # Only the newest two releases are read or kept (scores of older ones are plain post-processing).
    old = list(
        PopularityRelease.objects.filter(tenant_id=tenant_id)
        .order_by("-created_at", "-id")
        .values_list("pk", flat=True)[2:]
    )
    if old:
        PopularityScore.objects.filter(tenant_id=tenant_id, release_id__in=old).delete()
    return release


def popularity_release_create(*, tenant_id: int, epsilon: Any, actor: str) -> dict[str, Any]:
    """Charge ε and release DP item popularity now (Gaussian mechanism, per-user capped counts).

    (ε, δ)-DP at the user level (see ``ml.popularity.dp_popularity``); δ = min(tenant δ, 1/N).
    Refused like a training run when over budget. The noise seed is fresh randomness.
    """
    from apps.modeling.ml.popularity import dp_popularity

    eps = parse_epsilon(epsilon)
    cap = sotto().modeling_popularity_cap
    with tenant_context(tenant_id):
        charge = ledger_charge(
            tenant_id=tenant_id, epsilon=eps, kind=ReleaseKind.POPULARITY, actor=actor, min_users=1
        )
        users, delta = charge.users, charge.delta
        entry = charge.record(details={"mechanism": "gaussian (analytic), L2 sensitivity 1", "cap": cap})
        user, item, universe = tenant_data.event_pairs(tenant_id)
        index = np.searchsorted(universe, item)
        release = dp_popularity(user, index, len(universe), eps, delta, cap=cap, seed=secrets.randbits(62))
        ledger_mechanism_record(
            entry=entry,
            epsilon=release.epsilon,
            delta=release.delta,
            noise_multiplier=release.sigma,
            users=users,
            accountant="analytic-gauss",
            details={"mechanism": "gaussian", "sigma": release.sigma, "cap": cap, "sensitivity": 1.0},
        )
        stored = popularity_release_store(
            tenant_id=tenant_id,
            entry=entry,
            run=None,
            item_pks=universe,
            counts=release.counts,
            epsilon=eps,
            delta=delta,
            sigma=release.sigma,
            cap=cap,
            n_users=users,
        )
        audit.record(
            tenant_id=tenant_id,
            actor=actor,
            action=AuditAction.POPULARITY_RELEASE,
            target_type="popularity_release",
            target_id=str(stored.pk),
            details={"epsilon": repr(eps), "delta": repr(delta), "users": users},
        )
    return {
        "id": stored.pk,
        "created_at": stored.created_at,
        "epsilon": eps,
        "delta": delta,
        "sigma": release.sigma,
        "cap": cap,
        "users": users,
        "items": len(universe),
    }

"""Modeling state changes: privacy budget, charged releases, training runs, the serving forward pass.

What callers may rely on:

- Every release of something learned from interactions (a training run, a popularity release) is
  charged to the tenant's append-only ledger *before* it is computed, in the same transaction as
  the row that describes it, with the tenant's budget row locked (``FOR UPDATE``), so concurrent
  requests cannot both spend the last of a budget. A request that would exceed what remains is
  refused with ``Conflict`` (409) and writes nothing; nothing is queued.
- A training run is queued on commit (``transaction.on_commit``) to the ``train`` queue; the
  worker side lives in ``apps.modeling.training`` (the only module that imports torch).
- δ of a release is ``min(tenant δ, 1/N_users)`` with N_users counted at request time.
- Budget changes and releases are audited in the same transaction.
- Importing this module does not import torch.
"""

from __future__ import annotations

import functools
import logging
import math
import secrets
from collections.abc import Callable
from dataclasses import asdict, fields
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.audit import AuditAction, SystemActor
from apps.core.conf import sotto_setting
from apps.core.errors import Conflict, DomainError, ErrorCode
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.modeling import tenant_data
from apps.modeling.artifacts import ServingModel
from apps.modeling.ledger import training_run_failed_record
from apps.modeling.ml.config import TOWER_DEFAULTS, ModelConfig
from apps.modeling.ml.features import tower_input
from apps.modeling.ml.inference import user_vectors
from apps.modeling.models import (
    LedgerEntry,
    LedgerMechanism,
    PopularityRelease,
    PopularityScore,
    PrivacyBudget,
    ReleaseKind,
    RunStatus,
    TrainingRun,
)
from apps.modeling.selectors import budget_defaults, run_repr
from apps.tenancy.models import Tenant

log = logging.getLogger(__name__)

__all__ = [
    "active_model_rollback",
    "dp_design",
    "parse_epsilon",
    "planned_mechanism",
    "popularity_release_create",
    "privacy_budget_set",
    "run_config",
    "training_run_start",
    "training_runs_reap",
    "user_interest",
]

EPSILON_TOLERANCE = 1e-9
# The DP configuration chosen in docs/results/p1-experiments.md (round 2) for every finite ε:
# DP popularity + DP item-item Gram factors ("DP PureSVD", ``ml.dp_factors``), composed exactly as
# Gaussian mechanisms (GDP), no DP-SGD (epochs=0: the tower is its initialisation). Same as
# ``ml.evaluate.default_p1_config().private``; rank, M and the popularity weight then follow the run's ε
# (``ml.dp_factors.scheduled_config``, applied by :func:`run_config`), as in the evaluation.
DP_DEFAULTS = ModelConfig(epochs=0, hidden=16, freeze_skip=True, factor_rank=16, factor_items=300,
                          init_content_weights=(0.25, 0.25), init_pop_weight=0.3)
# The public-feature two-tower trained with DP-SGD through Opacus (``ml.tower``; decision 0003):
# DP popularity (a fifth of ε alone) and DP-SGD of a low-rank item projection of the BERT vectors plus
# the user MLP, composed by Opacus' RDP accountant. Every item gets collaborative signal.
# "auto" (the default) picks "tower" from this many trainable users up, "factors" below (measured:
# docs/results/model-scale.md, decision 0003).
TOWER_MIN_USERS = 5000
DP_DESIGNS = ("auto", "tower", "factors")
DESIGN_ALIASES = {"dpsgd": "tower"}  # the pre-0003 DP-SGD design name now runs the Opacus tower
GDP_ACCOUNTANT = "GDP (analytic Gaussian, exact composition)"
_RUN_EXTRA_KEYS = {"holdout_fraction", "seed"}
_DP_FORBIDDEN = {"learn_items", "item_id_emb", "emb_dim"}  # item side must stay fixed under DP; no emb state


# --- serving ------------------------------------------------------------------------------------


def user_interest(model: ServingModel, state: dict[str, Any] | None) -> np.ndarray:
    """Unit-norm user vector (``model.item_dim``) for a state from ``apps.profiles.selectors.user_state``.

    Numpy only (``ml.inference.user_vectors`` over ``ml.features.tower_input``). ``None`` (cold
    start) maps to the tower's zero-input output, which leans on the DP popularity coordinate.
    Raises ``ValueError`` if the state was built with another feature layout than the model's.
    """
    n_in = int(model.weights["user.skip.weight"].shape[1])
    if state is None or int(state.get("n_events", 0)) == 0:
        z = np.zeros(n_in, dtype=np.float32)
    else:
        z = tower_input(state, model.feature_config)
        if z.shape[0] != n_in:
            raise ValueError(
                f"user state gives a {z.shape[0]}-d tower input, model v{model.version} expects {n_in}: "
                "states must be rebuilt with the model's feature configuration"
            )
    vec: np.ndarray = user_vectors(model.weights, z)[0]
    return vec


# --- budget ----------------------------------------------------------------------------------------


def parse_epsilon(raw: Any, *, name: str = "epsilon") -> float:
    """A positive finite number (JSON number, not a string or boolean); ``DomainError`` (400) otherwise."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise DomainError(f"{name} must be a number", details={name: "must be a positive finite number"})
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise DomainError(f"{name} must be positive and finite, got {raw!r}",
                          details={name: "must be a positive finite number"})
    return value


def _budget_locked(tenant_id: int) -> PrivacyBudget:
    total, delta = budget_defaults()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO modeling_privacybudget (tenant_id, epsilon_total, delta, updated_at) "
            "VALUES (%s, %s, %s, now()) ON CONFLICT (tenant_id) DO NOTHING",
            [int(tenant_id), total, delta],
        )
    return PrivacyBudget.objects.select_for_update().get(tenant_id=tenant_id)


def _spent(tenant_id: int, budget: PrivacyBudget) -> float:
    """Σ ε of the charges that still count against ``budget`` (``selectors.charge_counts``)."""
    from apps.modeling.selectors import counting_entries

    entries = list(LedgerEntry.objects.filter(tenant_id=tenant_id).only("created_at", "epsilon"))
    return float(sum(e.epsilon for e in counting_entries(entries, budget, timezone.now())))


class _Keep:
    """Marker: leave this field of the budget policy as it is."""


KEEP: Any = _Keep()


def parse_budget_total(raw: Any) -> float:
    """ε of a budget: positive, finite and within the operator's ``MAX_EPSILON_TOTAL``."""
    eps = parse_epsilon(raw, name="epsilon_total")
    cap = float(sotto_setting("MAX_EPSILON_TOTAL"))
    if eps > cap:
        raise DomainError(f"epsilon_total {eps:g} is above the operator's cap of {cap:g}",
                          details={"epsilon_total": f"must be at most {cap:g}"})
    return eps


def parse_delta(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not (0 < float(raw) < 1):
        raise DomainError("delta must be a number in (0, 1)", details={"delta": "must be in (0, 1)"})
    return float(raw)


def parse_renewal_days(raw: Any) -> int | None:
    """``None`` (a lifetime budget) or whole days, at least the operator's ``MIN_RENEWAL_DAYS``."""
    if raw is None:
        return None
    low, high = int(sotto_setting("MIN_RENEWAL_DAYS")), 3650
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise DomainError(f"renewal_days must be null (a lifetime budget) or a whole number of days in [{low}, {high}]",
                          details={"renewal_days": f"null or an integer in [{low}, {high}]"})
    return int(raw)


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


MIN_RELEASE_EPSILON = 1e-3  # below it a release is noise only, and endless tiny releases would add up δ


def privacy_budget_set(
    *, tenant: Tenant, actor: str, epsilon_total: Any = KEEP, delta: Any = KEEP, renewal_days: Any = KEEP,
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
        budget = _budget_locked(tenant.pk)
        before = {"epsilon_total": repr(budget.epsilon_total), "delta": repr(budget.delta),
                  "renewal_days": budget.renewal_days}
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
        budget.save(update_fields=["epsilon_total", "delta", "renewal_days", "carry_before", "carry_days", "updated_at"])
        audit.record(
            tenant_id=tenant.pk, actor=actor, action=AuditAction.PRIVACY_BUDGET_SET, target_type="tenant", target_id=str(tenant.pk),
            details={"epsilon_total": repr(budget.epsilon_total), "delta": repr(budget.delta),
                     "renewal_days": budget.renewal_days, "previous": before},
        )
    return budget


def _charge(
    *, tenant_id: int, epsilon: float, kind: str, actor: str, min_users: int
) -> tuple[PrivacyBudget, int, float, float]:
    """Lock the budget, refuse what does not fit; returns (budget, users, δ, remaining before).

    With a renewal window only the charges that still count do (``selectors.charge_counts``)."""
    if epsilon < MIN_RELEASE_EPSILON:
        raise DomainError(f"ε {epsilon:g} is below the smallest release of {MIN_RELEASE_EPSILON:g}",
                          details={"epsilon": f"at least {MIN_RELEASE_EPSILON:g}"})
    budget = _budget_locked(tenant_id)
    spent = _spent(tenant_id, budget)
    remaining = max(0.0, budget.epsilon_total - spent)
    if epsilon > remaining + EPSILON_TOLERANCE:
        window = "" if budget.renewal_days is None else f" in the last {budget.renewal_days} days"
        raise Conflict(
            f"ε {epsilon:g} exceeds the remaining privacy budget {remaining:g} "
            f"(total {budget.epsilon_total:g}, spent {spent:g}{window}); nothing was released",
            code=ErrorCode.BUDGET_EXCEEDED,
            details={"epsilon_requested": epsilon, "epsilon_remaining": remaining,
                     "epsilon_total": budget.epsilon_total, "epsilon_spent": spent,
                     "renewal_days": budget.renewal_days},
        )
    users = tenant_data.trainable_users(tenant_id) if kind == ReleaseKind.TRAINING else _event_users(tenant_id)
    if users < min_users:
        raise Conflict(
            f"{users} users have usable events; a {kind} release needs at least {min_users}",
            code=ErrorCode.NOT_ENOUGH_USERS, details={"users": users, "minimum": min_users},
        )
    return budget, users, min(budget.delta, 1.0 / users), remaining


def _event_users(tenant_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(DISTINCT user_id) FROM profiles_userevent WHERE tenant_id = %s", [int(tenant_id)])
        row = cursor.fetchone()
    return int(row[0]) if row else 0


# --- training runs ----------------------------------------------------------------------------------


def dp_design(tenant_settings: dict[str, Any] | None, n_users: int | None = None) -> str:
    """The design a run uses: ``Tenant.settings["dp_design"]`` ("auto" by default, "tower", "factors";
    "dpsgd" is an alias of "tower"). "auto" is "tower" for tenants of at least ``TOWER_MIN_USERS``
    trainable users and "factors" below (or when the size is unknown). ``Conflict`` otherwise."""
    raw = (tenant_settings or {}).get("dp_design") or "auto"
    design = DESIGN_ALIASES.get(str(raw), raw)
    if design not in DP_DESIGNS:
        raise Conflict(f"Tenant.settings['dp_design'] must be one of {list(DP_DESIGNS)}, got {raw!r}",
                       code=ErrorCode.MISCONFIGURED, details={"dp_design": raw})
    if design == "auto":
        return "tower" if n_users is not None and n_users >= TOWER_MIN_USERS else "factors"
    return str(design)


def run_config(
    tenant_settings: dict[str, Any] | None, epsilon: float | None = None, n_users: int | None = None
) -> dict[str, Any]:
    """ModelConfig fields (DP defaults of the tenant's ``dp_design``, for the "factors" design shaped
    by ``epsilon`` with ``ml.dp_factors.scheduled_config`` when given, overridden by
    ``Tenant.settings["modeling"]``) + run extras (``holdout_fraction``, ``dp_design``).

    Unknown keys, or keys that DP training cannot honour, are refused (``Conflict``: the tenant's
    settings, not the request, are wrong).
    """
    design = dp_design(tenant_settings, n_users)
    overrides = dict((tenant_settings or {}).get("modeling") or {})
    known = {f.name for f in fields(ModelConfig)}
    bad = sorted(k for k in overrides if (k not in known and k not in _RUN_EXTRA_KEYS) or k in _DP_FORBIDDEN)
    if bad:
        raise Conflict(f"Tenant.settings['modeling'] has keys DP training cannot use: {bad}",
                       code=ErrorCode.MISCONFIGURED, details={"keys": bad})
    if design == "factors":
        from apps.modeling.ml.dp_factors import scheduled_config

        base = asdict(scheduled_config(DP_DEFAULTS, epsilon, n_users) if epsilon is not None else DP_DEFAULTS)
    else:
        base = asdict(TOWER_DEFAULTS)
    for key, value in overrides.items():
        if key in known:
            default = base[key]
            if isinstance(default, tuple):
                value = tuple(value)
            elif isinstance(default, bool) or not isinstance(default, int | float | str):
                pass
            elif isinstance(default, float):
                value = float(value)
            elif isinstance(default, int):
                value = int(value)
            base[key] = value
    try:
        cfg = ModelConfig(**base)
    except (TypeError, ValueError) as exc:
        raise Conflict(f"Tenant.settings['modeling'] is invalid: {exc}", code=ErrorCode.MISCONFIGURED) from exc
    if design == "factors":
        if cfg.epochs != 0 or cfg.factor_rank < 1 or cfg.factor_items < 1 or not (0 < cfg.factor_share < 1) \
                or cfg.factor_ridge <= 0:
            raise Conflict("dp_design 'factors' needs epochs = 0 (no DP-SGD), factor_rank >= 1, factor_items >= 1, "
                           "0 < factor_share < 1, factor_ridge > 0", code=ErrorCode.MISCONFIGURED)
    elif cfg.epochs < 1 or cfg.expected_batch < 1 or cfg.max_grad_norm <= 0 or cfg.negatives < 1 \
            or cfg.max_targets < 1 or cfg.proj_rank < 0 or not (0 < cfg.pop_epsilon_share < 1) or cfg.factor_rank != 0:
        raise Conflict("dp_design 'tower' needs epochs >= 1, expected_batch >= 1, max_grad_norm > 0, negatives >= 1, "
                       "max_targets >= 1, proj_rank >= 0, 0 < pop_epsilon_share < 1, factor_rank = 0",
                       code=ErrorCode.MISCONFIGURED)
    out: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    out["dp_design"] = design
    out["holdout_fraction"] = float(overrides.get("holdout_fraction", 0.1))
    if not 0 <= out["holdout_fraction"] < 0.5:
        raise Conflict("holdout_fraction must be in [0, 0.5)", code=ErrorCode.MISCONFIGURED)
    return out


def training_queue() -> str:
    return f"{sotto_setting('QUEUE_PREFIX')}train"


def _enqueue(tenant_id: int, run_id: int) -> None:
    from apps.modeling.tasks import train

    train.apply_async(args=[int(tenant_id), int(run_id)], queue=training_queue())


def training_run_start(*, tenant_id: int, epsilon: Any, actor: str) -> dict[str, Any]:
    """Charge ε to the ledger and queue a DP training run; returns the run (``run_repr``).

    Refused (``Conflict``, nothing written, nothing queued) when ε exceeds what remains or too
    few users have events. δ = min(tenant δ, 1/N_users). The planned mechanism goes into the
    ledger entry's details (:func:`planned_mechanism`).
    """
    eps = parse_epsilon(epsilon)
    with tenant_context(tenant_id):
        tenant_settings = Tenant.objects.filter(pk=tenant_id).values_list("settings", flat=True).first()
        from apps.modeling.tenant_data import trainable_users

        config = run_config(tenant_settings, eps, trainable_users(tenant_id))
        _, users, delta, remaining = _charge(
            tenant_id=tenant_id, epsilon=eps, kind=ReleaseKind.TRAINING, actor=actor,
            min_users=int(sotto_setting("MODELING_MIN_USERS")),
        )
        fixed_seed = (tenant_settings or {}).get("modeling", {}).get("seed")
        seed = int(fixed_seed) if fixed_seed is not None else secrets.randbits(31)
        run = TrainingRun.objects.create(
            tenant_id=tenant_id, status=RunStatus.QUEUED, epsilon=eps, delta=delta, n_users=users, config=config,
            seed=seed, actor=actor[:200], epochs=int(config["epochs"]),
        )
        LedgerEntry.objects.create(
            tenant_id=tenant_id, kind=ReleaseKind.TRAINING, run=run, epsilon=eps, delta=delta, users=users,
            actor=actor[:200], details=planned_mechanism(config, eps, delta, users),
        )
        audit.record(
            tenant_id=tenant_id, actor=actor, action=AuditAction.TRAINING_RUN_START, target_type="training_run",
            target_id=str(run.pk),
            details={"epsilon": repr(eps), "delta": repr(delta), "users": users,
                     "epsilon_remaining_before": repr(remaining)},
        )
        transaction.on_commit(lambda: _enqueue(tenant_id, run.pk), robust=True)
    return run_repr(run)


def gaussian_epsilon(sigma: float, delta: float) -> float:
    """Smallest ε with a sensitivity-1 Gaussian of noise ``sigma`` (ε, δ)-DP (analytic curve; bisection
    from above, so the result never understates ε by more than 1e-12 relative)."""
    from apps.modeling.ml.popularity import _delta_for

    lo, hi = 0.0, 1.0
    while _delta_for(sigma, hi) > delta:
        hi *= 2.0
    if _delta_for(sigma, lo) <= delta:
        return 0.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if _delta_for(sigma, mid) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi


def factor_release_plan(config: dict[str, Any], epsilon: float, delta: float) -> dict[str, Any]:
    """Noise of the two Gaussian releases of the "factors" design for a total (ε, δ).

    Both have L2 sensitivity 1, so release k is (1/sigma_k)-GDP and together they are mu-GDP with
    mu² = 1/sigma_pop² + 1/sigma_gram² (exact, also adaptive); sigma_total = 1/mu is the
    analytic-Gaussian sigma for (ε, δ), split as 1/sigma_k² = share_k/sigma_total²
    (``ml.dp_factors.split_gaussian_sigmas``).
    """
    from apps.modeling.ml.dp_factors import split_gaussian_sigmas
    from apps.modeling.ml.popularity import analytic_gaussian_sigma

    share = float(config["factor_share"])
    sigma_pop, sigma_gram = split_gaussian_sigmas(epsilon, delta, [1.0 - share, share])
    sigma_total = analytic_gaussian_sigma(epsilon, delta, 1.0)
    return {
        "sigma_pop": sigma_pop, "sigma_gram": sigma_gram, "sigma_total": sigma_total,
        "mu_total": 1.0 / sigma_total, "mu_pop": 1.0 / sigma_pop, "mu_gram": 1.0 / sigma_gram,
        "mu2_share_pop": 1.0 - share, "mu2_share_gram": share,
    }


def planned_mechanism(config: dict[str, Any], epsilon: float, delta: float, n_users: int) -> dict[str, Any]:
    """What a training run with this ``run_config`` will release for (ε, δ) (ledger entry details)."""
    if config.get("dp_design") == "factors":
        return {
            "design": "factors",
            "mechanism": "gaussian popularity + gaussian item-item gram (DP PureSVD), no DP-SGD",
            **factor_release_plan(config, epsilon, delta),
            "factor_rank": config["factor_rank"], "factor_items": config["factor_items"],
            "pop_cap": config["pop_cap"], "sensitivity": 1.0, "delta": delta, "epochs": 0,
            "accountant": GDP_ACCOUNTANT, "composition": "GDP (exact)",
        }
    from apps.modeling.ml.tower import dp_schedule

    batch, q, steps = dp_schedule(n_users, int(config["expected_batch"]), int(config["epochs"]))
    return {
        "design": "tower",
        "mechanism": "gaussian popularity + DP-SGD (Opacus, Poisson, user level) of the public-feature two-tower",
        "epsilon_pop_alone": float(config["pop_epsilon_share"]) * epsilon, "delta": delta,
        "sample_rate": q, "expected_batch": batch, "steps": steps, "epochs": config["epochs"],
        "clip_norm": config["max_grad_norm"], "accountant": config["accountant"],
        "composition": f"{config['accountant']} (Opacus) over popularity + DP-SGD; noise calibrated on the users "
                       "at training time",
    }


# --- popularity releases ----------------------------------------------------------------------------


def popularity_release_store(
    *, tenant_id: int, entry: LedgerEntry, run: TrainingRun | None, item_pks: np.ndarray, counts: np.ndarray,
    epsilon: float, delta: float, sigma: float, cap: int, n_users: int,
) -> PopularityRelease:
    """Store a computed release (caller's tenant-scoped transaction); scores > 0 only."""
    release = PopularityRelease.objects.create(
        tenant_id=tenant_id, entry=entry, run=run, epsilon=epsilon, delta=delta, sigma=sigma, cap=cap,
        n_users=n_users, n_items=len(item_pks),
    )
    keep = np.flatnonzero(counts > 0)
    PopularityScore.objects.bulk_create(
        [PopularityScore(tenant_id=tenant_id, release=release, item_id=int(item_pks[i]), score=float(counts[i]))
         for i in keep],
        batch_size=2000,
    )
    # Only the newest two releases are read or kept (scores of older ones are plain post-processing).
    old = list(PopularityRelease.objects.filter(tenant_id=tenant_id).order_by("-created_at", "-id")
               .values_list("pk", flat=True)[2:])
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
    cap = int(sotto_setting("MODELING_POPULARITY_CAP"))
    with tenant_context(tenant_id):
        _, users, delta, _ = _charge(tenant_id=tenant_id, epsilon=eps, kind=ReleaseKind.POPULARITY, actor=actor,
                                     min_users=1)
        entry = LedgerEntry.objects.create(
            tenant_id=tenant_id, kind=ReleaseKind.POPULARITY, epsilon=eps, delta=delta, users=users,
            actor=actor[:200], details={"mechanism": "gaussian (analytic), L2 sensitivity 1", "cap": cap},
        )
        user, item, universe = tenant_data.event_pairs(tenant_id)
        index = np.searchsorted(universe, item)
        release = dp_popularity(user, index, len(universe), eps, delta, cap=cap, seed=secrets.randbits(62))
        LedgerMechanism.objects.create(
            tenant_id=tenant_id, entry=entry, epsilon=release.epsilon, delta=release.delta,
            noise_multiplier=release.sigma, users=users, accountant="analytic-gauss",
            details={"mechanism": "gaussian", "sigma": release.sigma, "cap": cap, "sensitivity": 1.0},
        )
        stored = popularity_release_store(
            tenant_id=tenant_id, entry=entry, run=None, item_pks=universe, counts=release.counts, epsilon=eps,
            delta=delta, sigma=release.sigma, cap=cap, n_users=users,
        )
        audit.record(
            tenant_id=tenant_id, actor=actor, action=AuditAction.POPULARITY_RELEASE, target_type="popularity_release",
            target_id=str(stored.pk), details={"epsilon": repr(eps), "delta": repr(delta), "users": users},
        )
    return {"id": stored.pk, "created_at": stored.created_at, "epsilon": eps, "delta": delta,
            "sigma": release.sigma, "cap": cap, "users": users, "items": len(universe)}


# --- stale runs ------------------------------------------------------------------------------------


def _mark_failed(tenant_id: int, run_id: int, reason: str, *, only_if: tuple[str, ...]) -> bool:
    """Fail the run, refund its charge (it released nothing) and drop any half-materialised version."""
    from apps.modeling.training import discard_versions_of_run

    with tenant_context(tenant_id):
        changed = TrainingRun.objects.filter(tenant_id=tenant_id, pk=run_id, status__in=only_if).update(
            status=RunStatus.FAILED, error=reason[:1000], finished_at=timezone.now()
        )
        if changed:
            training_run_failed_record(tenant_id=tenant_id, run_id=run_id, reason=reason, actor=SystemActor.TASK_MODELING)
    if changed:
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
    return bool(changed)


def training_runs_reap(*, now: datetime | None = None, stale_after_s: float | None = None,
                       requeue_after_s: float | None = None) -> dict[str, int]:
    """Fail runs whose worker died (no heartbeat for ``MODELING_STALE_AFTER_S``: "worker lost");
    re-send runs still queued after ``MODELING_REQUEUE_AFTER_S`` (a lost message; the task is
    idempotent, so a duplicate is harmless). A failed run's charge is refunded: it released nothing."""
    now = now or timezone.now()
    stale = timedelta(seconds=float(stale_after_s if stale_after_s is not None else sotto_setting("MODELING_STALE_AFTER_S")))
    requeue = timedelta(seconds=float(requeue_after_s if requeue_after_s is not None
                                      else sotto_setting("MODELING_REQUEUE_AFTER_S")))
    with dangerously_as_platform():
        running = list(TrainingRun.objects.filter(status=RunStatus.RUNNING).values_list("tenant_id", "pk", "heartbeat_at",
                                                                                       "started_at"))
        # heartbeat_at of a queued run = when it was last re-sent
        queued = [(t, pk) for t, pk, sent, created in TrainingRun.objects.filter(status=RunStatus.QUEUED)
                  .values_list("tenant_id", "pk", "heartbeat_at", "created_at") if (sent or created) < now - requeue]
    failed = 0
    for tenant_id, run_id, beat, started in running:
        last = beat or started
        if last is None or last < now - stale:
            seen = "never" if last is None else last.isoformat()
            failed += _mark_failed(tenant_id, run_id, f"worker lost: no heartbeat since {seen}",
                                   only_if=(RunStatus.RUNNING,))
    for tenant_id, run_id in queued:
        with tenant_context(tenant_id):
            if TrainingRun.objects.filter(tenant_id=tenant_id, pk=run_id, status=RunStatus.QUEUED).update(heartbeat_at=now):
                transaction.on_commit(functools.partial(_enqueue, tenant_id, run_id), robust=True)
    return {"failed": failed, "requeued": len(queued)}


# --- rollback ----------------------------------------------------------------------------------------


def active_model_rollback(*, tenant_id: int, actor: str) -> dict[str, Any]:
    """Serve the previous version again (``lifecycle.model_rollback``); a second call rolls forward."""
    from apps.modeling.lifecycle import model_rollback

    return model_rollback(tenant_id=tenant_id, actor=actor)

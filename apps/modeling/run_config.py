"""Run configuration: which DP design a tenant's run uses and with which hyper-parameters.

What callers may rely on: :func:`run_config` is what a training run is charged and trained with
(stored on the run); it reads ``Tenant.settings`` (``dp_design``, ``modeling``) and refuses
(``Conflict``, ``misconfigured``) what DP training cannot honour. Torch-free: the web process
calls it when a run is requested.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from apps.core.conf import sotto
from apps.core.errors import Conflict, ErrorCode
from apps.modeling.ml.config import FACTORS_DEFAULTS, TOWER_DEFAULTS, ModelConfig

__all__ = [
    "DESIGN_ALIASES",
    "DP_DEFAULTS",
    "DP_DESIGNS",
    "TOWER_MIN_USERS",
    "dp_design",
    "run_config",
    "training_queue",
]

# The DP configuration of dp_design "factors" (``ml.config.FACTORS_DEFAULTS``, which the P1 evaluation
# measures); rank, M and the popularity weight follow the run's ε (applied by :func:`run_config`).
DP_DEFAULTS = FACTORS_DEFAULTS
# The public-feature two-tower trained with DP-SGD through Opacus (``ml.tower``; decision 0003):
# DP popularity (a fifth of ε alone) and DP-SGD of a low-rank item projection of the BERT vectors plus
# the user MLP, composed by Opacus' RDP accountant. Every item gets collaborative signal.
# "auto" (the default) picks "tower" from this many trainable users up, "factors" below (measured:
# docs/results/model-scale.md, decision 0003).
TOWER_MIN_USERS = 5000
DP_DESIGNS = ("auto", "tower", "factors")
DESIGN_ALIASES = {"dpsgd": "tower"}  # the pre-0003 DP-SGD design name now runs the Opacus tower
_RUN_EXTRA_KEYS = {"holdout_fraction", "seed"}
_DP_FORBIDDEN = {"learn_items", "item_id_emb", "emb_dim"}  # item side must stay fixed under DP; no emb state


def dp_design(tenant_settings: dict[str, Any] | None, n_users: int | None = None) -> str:
    """The design a run uses: ``Tenant.settings["dp_design"]`` ("auto" by default, "tower", "factors";
    "dpsgd" is an alias of "tower"). "auto" is "tower" for tenants of at least ``TOWER_MIN_USERS``
    trainable users and "factors" below (or when the size is unknown). ``Conflict`` otherwise."""
    raw = (tenant_settings or {}).get("dp_design") or "auto"
    design = DESIGN_ALIASES.get(str(raw), raw)
    if design not in DP_DESIGNS:
        raise Conflict(
            f"Tenant.settings['dp_design'] must be one of {list(DP_DESIGNS)}, got {raw!r}",
            code=ErrorCode.MISCONFIGURED,
            details={"dp_design": raw},
        )
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
        raise Conflict(
            f"Tenant.settings['modeling'] has keys DP training cannot use: {bad}",
            code=ErrorCode.MISCONFIGURED,
            details={"keys": bad},
        )
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
        raise Conflict(
            f"Tenant.settings['modeling'] is invalid: {exc}", code=ErrorCode.MISCONFIGURED
        ) from exc
    if design == "factors":
        if (
            cfg.epochs != 0
            or cfg.factor_rank < 1
            or cfg.factor_items < 1
            or not (0 < cfg.factor_share < 1)
            or cfg.factor_ridge <= 0
        ):
            raise Conflict(
                "dp_design 'factors' needs epochs = 0 (no DP-SGD), factor_rank >= 1, factor_items >= 1, "
                "0 < factor_share < 1, factor_ridge > 0",
                code=ErrorCode.MISCONFIGURED,
            )
    elif (
        cfg.epochs < 1
        or cfg.expected_batch < 1
        or cfg.max_grad_norm <= 0
        or cfg.negatives < 1
        or cfg.max_targets < 1
        or cfg.proj_rank < 0
        or not (0 < cfg.pop_epsilon_share < 1)
        or cfg.factor_rank != 0
    ):
        raise Conflict(
            "dp_design 'tower' needs epochs >= 1, expected_batch >= 1, max_grad_norm > 0, negatives >= 1, "
            "max_targets >= 1, proj_rank >= 0, 0 < pop_epsilon_share < 1, factor_rank = 0",
            code=ErrorCode.MISCONFIGURED,
        )
    out: dict[str, Any] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    out["dp_design"] = design
    out["holdout_fraction"] = float(overrides.get("holdout_fraction", 0.1))
    if not 0 <= out["holdout_fraction"] < 0.5:
        raise Conflict("holdout_fraction must be in [0, 0.5)", code=ErrorCode.MISCONFIGURED)
    return out


def training_queue() -> str:
    return f"{sotto().queue_prefix}train"

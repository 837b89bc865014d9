"""Protocol P1 end to end: baselines + Sotto two-tower over a list of epsilons.

Entry point for ``manage.py evaluate``: :func:`run_p1`. Torch is imported
lazily (only when a model is trained), so importing this module is cheap.

Privacy accounting per finite epsilon (total budget, user level):
``epsilon = epsilon_pop + epsilon_sgd`` and ``delta = delta_pop + delta_sgd``
by basic composition, with ``epsilon_pop = pop_epsilon_share * epsilon`` for
the DP popularity coordinate and the rest for DP-SGD; delta = 1/n_users by
default, split in half.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from . import baselines
from .config import FACTORS_DEFAULTS, TOWER_DEFAULTS, ModelConfig
from .data import load_movielens, p1_split, user_histories
from .dp_factors import release_item_extras, scheduled_config
from .features import FeatureConfig
from .history import fit_history_operator, history_vectors
from .metrics import evaluate_scores

__all__ = ["P1Config", "default_p1_config", "legacy_private_config", "plot_privacy_utility", "run_p1"]

Progress = Callable[[str, int, int, float], None]

# Sotto's P1 rows: model name -> the product's dp_design it measures
SOTTO_MODELS = {"sotto-two-tower": "factors", "sotto-tower": "tower"}
# What each private Sotto row ran (the product's dp_design of the same name; docs/modeling.md).
METHODS = {
    "factors": "dp_design factors: Gaussian DP popularity + Gaussian item-item Gram over the top items "
    "(DP PureSVD), composed as GDP; no DP-SGD",
    "tower": "dp_design tower: Opacus DP-SGD (Poisson sampling, one row per user, per-user clipping) on an MLP "
    "user tower over public BERT content features with a learned item projection and public negatives, "
    "+ Gaussian DP popularity; composed by Opacus' RDP accountant",
}


@dataclass(frozen=True)
class HistoryConfig:
    """The recency-history block of the non-private reference row (``ml.history``; p1-experiments round 5)."""

    items: int = 3000  # M: the Gram covers the most popular items
    lam: float = 5.0  # EASE ridge on the normalised-row Gram
    rank: int = 64
    half_life: float = 5.0  # events
    weight: float = 4.0  # of the history block against the factors design's cosine score


@dataclass
class P1Config:
    """Which models and hyper-parameters P1 runs (``ModelConfig`` objects, or None for defaults)."""

    nonprivate: Any = None
    private: Any = None
    features: FeatureConfig = field(default_factory=FeatureConfig)
    baselines: bool = True
    ease_lambda: float = 500.0
    delta: float | None = None  # total delta; default 1/n_users
    # shape the private factor design by ε (``dp_factors.scheduled_config``), as the product does
    epsilon_schedule: bool = True
    # the Opacus public-feature tower (``ml.tower``, dp_design "tower") at every ε too; None = skip
    tower: ModelConfig | None = field(default_factory=lambda: replace(TOWER_DEFAULTS))
    # the non-private row adds the user's recency-weighted last items over the Gram's EASE operator
    history: HistoryConfig | None = field(default_factory=HistoryConfig)


def default_p1_config() -> P1Config:
    """Configs chosen in docs/results/p1-experiments.md."""

    # DP: the product's factors design (``FACTORS_DEFAULTS``; rank, M and the popularity weight follow ε
    # via dp_factors.FACTOR_SCHEDULE in run_p1). The earlier design (popularity + DP-SGD on a hidden-16
    # residual) is ``legacy_private_config``.
    factors = FACTORS_DEFAULTS
    # non-private: the same design without noise (exact popularity and Gram), plus the history block
    return P1Config(nonprivate=factors, private=factors)


def legacy_private_config() -> Any:
    """The pre-factor DP design (popularity coordinate + DP-SGD), kept for comparison."""

    return ModelConfig(epochs=10, sample_rate=0.5, hidden=16, freeze_skip=True)


def _row(model: str, eps: float | None, m: dict[str, float], **extra: Any) -> dict[str, Any]:
    out = {
        "model": model,
        "epsilon": eps,
        "recall@20": m["recall@20"],
        "recall@20_capped": m["recall@20_capped"],
        "ndcg@10": m["ndcg@10"],
    }
    out.update(extra)
    return out


def run_p1(
    dataset_dir: str,
    epsilons: Sequence[float],
    content_vectors: np.ndarray,
    config: P1Config | None = None,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Evaluate baselines and the two-tower model at each epsilon (``inf`` = non-private).

    ``content_vectors`` must be aligned to the ascending item ids of the
    dataset (``load_movielens(dataset_dir).item_ids``). Returns
    ``{"protocol": "P1", "results": [{"model", "epsilon", "recall@20",
    "recall@20_capped", "ndcg@10", ...}]}``.
    """
    from . import inference
    from .train import TrainData, train_model, user_inputs

    cfg = config or default_p1_config()
    np_cfg: ModelConfig = cfg.nonprivate or default_p1_config().nonprivate
    dp_cfg: ModelConfig = cfg.private or default_p1_config().private
    data = load_movielens(dataset_dir)
    content = np.asarray(content_vectors, dtype=np.float32)
    if content.shape[0] != data.n_items:
        raise ValueError(f"content_vectors has {content.shape[0]} rows, dataset has {data.n_items} items")
    split = p1_split(data)
    tr = baselines.train_item_lists(split.train)
    n_items = data.n_items
    results: list[dict[str, Any]] = []

    def ev(fn: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        return evaluate_scores(fn, tr, split.test_items, n_items)

    if cfg.baselines:
        x = baselines.interaction_matrix(split.train)
        pop = baselines.popularity_scores(split.train)
        results.append(_row("popularity", None, ev(lambda u: np.tile(pop, (len(u), 1)))))
        sim = baselines.itemknn_scores(x)
        results.append(_row("itemknn", None, ev(lambda u: x[u] @ sim)))
        del sim
        bw = baselines.ease_weights(x, cfg.ease_lambda)
        results.append(_row(f"ease(lambda={cfg.ease_lambda:g})", None, ev(lambda u: x[u] @ bw)))
        del bw
        uv = baselines.content_mean_user_vectors(x, content)
        results.append(_row("seed-literal", None, ev(lambda u: uv[u] @ content.T)))

    n_users = data.n_users
    delta_total = cfg.delta if cfg.delta is not None else 1.0 / n_users
    for eps in epsilons:
        eps = float(eps)
        private = math.isfinite(eps)
        mc = (scheduled_config(dp_cfg, eps) if cfg.epsilon_schedule else dp_cfg) if private else np_cfg
        rel = release_item_extras(
            split.train.user, split.train.item, n_items, eps, delta_total, mc, seed=seed, content=content
        )
        extras = rel.extras
        eps_sgd, delta_sgd = (rel.epsilon_sgd, rel.delta_sgd) if private else (None, None)
        td = TrainData(split.train, content, extras, cfg.features)
        label = f"eps={eps:g}"

        def report(epoch: int, epochs: int, loss: float, _label: str = label) -> None:
            if on_progress is not None:
                on_progress(_label, epoch, epochs, loss)

        res = train_model(mc, td, seed=seed, epsilon=eps_sgd, delta=delta_sgd, on_progress=report)
        xu, h, _ = user_inputs(td, with_h=mc.emb_dim > 0)
        if h is not None:
            xu = np.concatenate(
                [xu, np.einsum("bcn,en->bce", h, res.weights["user.emb.weight"]).reshape(len(xu), -1)], axis=1
            )
        uvec = inference.user_vectors(res.weights, xu)
        ivec = inference.item_vectors(res.weights, content, extras)
        history = cfg.history if not private else None
        if history is not None:
            uvec, ivec = _with_history(split.train, rel.pop_counts, uvec, ivec, history, cfg.features.last_n)

        def model_scores(u: np.ndarray, uvec: np.ndarray = uvec, ivec: np.ndarray = ivec) -> np.ndarray:
            out: np.ndarray = uvec[u] @ ivec.T
            return out

        m = ev(model_scores)
        results.append(
            _row(
                "sotto-two-tower",
                eps if private else None,
                m,
                design="factors" if private else "nonprivate",
                mechanism=METHODS["factors"] if private else _nonprivate_mechanism(cfg.history),
                epsilon_sgd=res.epsilon,
                epsilon_sgd_other=res.epsilon_other,
                accountant=res.accountant,
                epsilon_pop=rel.epsilon if private else None,
                sigma_pop=rel.sigma_pop,
                sigma_gram=rel.sigma_gram,
                epsilon_total=(rel.epsilon + (res.epsilon or 0.0)) if private else None,
                delta=delta_total if private else None,
                noise_multiplier=res.noise_multiplier,
                sample_rate=res.sample_rate,
                epochs=res.epochs,
                steps=res.steps,
                max_grad_norm=res.max_grad_norm,
                seconds=round(res.seconds, 1),
                config=res.config,
            )
        )
    if cfg.tower is not None:
        results.extend(
            _tower_rows(split, content, cfg.tower, cfg.features, epsilons, delta_total, seed, ev, on_progress)
        )
    return {
        "protocol": "P1",
        "n_users": n_users,
        "n_items": n_items,
        "seed": seed,
        "method": {model: METHODS[design] for model, design in SOTTO_MODELS.items()},
        "results": results,
    }


def _nonprivate_mechanism(history: HistoryConfig | None) -> str:
    base = "the factors design without noise (exact popularity and Gram)"
    if history is None:
        return base
    return (
        f"{base} + the user's recency-weighted last items (half-life {history.half_life:g} events) over the "
        f"Gram's EASE operator (M={history.items}, lambda={history.lam:g}, rank {history.rank}; ml.history); "
        "evaluation reference, not served"
    )


def _with_history(
    train: Any,
    pop_counts: np.ndarray,
    uvec: np.ndarray,
    ivec: np.ndarray,
    history: HistoryConfig,
    last_n: int,
) -> tuple[np.ndarray, np.ndarray]:
    """User and item vectors with the history block appended: scores gain ``weight · q_u · R_i``."""
    items = np.argsort(-np.asarray(pop_counts), kind="stable")[: min(history.items, len(pop_counts))]
    op = fit_history_operator(
        train.user,
        train.item,
        len(pop_counts),
        items,
        lam=history.lam,
        rank=history.rank,
        half_life=history.half_life,
        last_n=last_n,
    )
    q = history_vectors(op, [train.item[rows] for rows in user_histories(train)])
    return (
        np.concatenate([uvec, history.weight * q], axis=1),
        np.concatenate([ivec, op.outputs.astype(ivec.dtype)], axis=1),
    )


def _tower_rows(
    split: Any,
    content: np.ndarray,
    tower: ModelConfig,
    features: FeatureConfig,
    epsilons: Sequence[float],
    delta: float,
    seed: int,
    ev: Callable[[Callable[[np.ndarray], np.ndarray]], dict[str, float]],
    on_progress: Progress | None,
) -> list[dict[str, Any]]:
    """P1 rows of the Opacus public-feature tower (sparse inputs, as the product trains and serves it),
    scored by ``ev`` exactly as the other rows."""
    from . import inference, sparse
    from .tower import release_tower

    x = sparse.tower_inputs(sparse.histories(split.train), content, features)
    rows: list[dict[str, Any]] = []
    for eps in epsilons:
        eps = float(eps)
        label = f"tower eps={eps:g}"

        def report(epoch: int, epochs: int, loss: float, _label: str = label) -> None:
            if on_progress is not None:
                on_progress(_label, epoch, epochs, loss)

        res, extras, _, release, spent = release_tower(
            split.train, content, tower, features, eps, delta, seed, report
        )
        uvec, ivec = (
            inference.user_vectors(res.weights, x),
            inference.item_vectors(res.weights, content, extras),
        )

        def scores(users: np.ndarray, uvec: np.ndarray = uvec, ivec: np.ndarray = ivec) -> np.ndarray:
            return np.asarray(uvec[users] @ ivec.T)

        m = ev(scores)
        private = math.isfinite(eps)
        rows.append(
            _row(
                "sotto-tower",
                eps if private else None,
                m,
                design="tower",
                mechanism=METHODS["tower"] if private else "the same tower trained without noise or clipping",
                epsilon_total=spent if private else None,
                delta=delta if private else None,
                accountant=release.get("accountant"),
                noise_multiplier=res.noise_multiplier,
                sample_rate=release.get("sample_rate"),
                epochs=res.epochs,
                steps=res.steps,
                max_grad_norm=res.max_grad_norm,
                seconds=round(res.seconds, 1),
                config=res.config,
            )
        )
    return rows


def plot_privacy_utility(result: dict[str, Any], path: str, metric: str = "recall@20") -> str:
    """Save a privacy-utility PNG (epsilon vs metric; baselines as horizontal lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for (name, design), color in zip(SOTTO_MODELS.items(), ("C0", "C9"), strict=True):
        label = f"Sotto {design}"
        rows = [r for r in result["results"] if r["model"] == name]
        dp = sorted([r for r in rows if r["epsilon"] is not None], key=lambda r: r["epsilon"])
        if dp:
            ax.plot(
                [r["epsilon"] for r in dp],
                [r[metric] for r in dp],
                "o-",
                color=color,
                label=f"{label} (user-level DP)",
            )
        for r in rows:
            if r["epsilon"] is None:
                ax.axhline(r[metric], color=color, ls="--", label=f"{label} non-private")
    for i, r in enumerate(x for x in result["results"] if x["model"] not in SOTTO_MODELS):
        ax.axhline(r[metric], color=f"C{i + 1}", ls=":", label=r["model"])
    ax.set_xscale("log")
    ax.set_xlabel("epsilon (total, user level)")
    ax.set_ylabel(metric)
    ax.set_title(f"P1 privacy-utility ({metric})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

"""Hyper-parameters of the two-tower model (torch-free, so the web process can read and validate them)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FACTORS_DEFAULTS", "TOWER_DEFAULTS", "ModelConfig"]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture and optimisation hyper-parameters (see train.train_model)."""

    hidden: int = 256
    emb_dim: int = 0  # learned per-item input embeddings on the user side (0 = off)
    learn_items: bool = False  # item adapter + extra scales (non-private only)
    item_id_emb: bool = False  # per-item ID embedding on the item side (non-private only)
    tau: float = 0.05
    init_pop_weight: float = 0.5  # initial weight of the popularity coordinate in q
    init_content_weights: tuple[float, ...] = (0.5, 0.5)  # skip init per channel
    lr: float = 1e-3
    weight_decay: float = 0.0
    epochs: int = 20
    batch_size: int = 64  # non-private mini-batch
    sample_rate: float = 0.5  # DP Poisson rate
    max_grad_norm: float = 1.0
    target_frac: tuple[float, float] = (0.05, 0.3)  # fraction of a user's history used as target
    accountant: str = "rdp"
    grad_sample_mode: str = "ghost"
    pop_epsilon_share: float = 0.5
    pop_cap: int = 50
    freeze_skip: bool = False  # keep the heuristic skip weight fixed (few DP parameters)
    # DP item factors (ml.dp_factors, "DP PureSVD"); factor_rank = 0 keeps the original design.
    # Item extras become [pop, V_i (rank cols), pad]; the skip layer maps the content mean to the
    # factor space (ridge of V on the public content of the factor items).
    factor_rank: int = 0
    factor_items: int = 200  # M: Gram over the M most popular items of the DP popularity release
    factor_share: float = 0.6  # share of the Gaussian budget (mu^2) for the Gram; rest -> popularity
    factor_ridge: float = 1.0
    init_factor_weight: float = 1.0  # weight of the factor block in the initial user vector
    # Items outside the top M get factor coordinates from their public content vector (ridge of the
    # released V on the top-M items' content: post-processing, no extra ε), so every item has a signal.
    factor_cover_all: bool = True
    factor_cover_scale: float = (
        0.5  # projected rows at half weight: a prediction, less sure than a released row
    )
    # The public-feature tower (ml.tower, dp_design "tower"): low-rank learned item projection of the
    # content vectors, sampled softmax with public negatives, sparse per-user rows.
    proj_rank: int = 32  # rank of W - I in the item projection c_i W (0 = content vectors as they are)
    negatives: int = 2048  # shared negatives per step, drawn from a public distribution
    max_targets: int = 32  # target items per user row and epoch
    expected_batch: int = 2048  # expected Poisson batch (users); the rate is 1/ceil(N / batch)


# The product's defaults for dp_design "factors" (docs/results/p1-experiments.md, round 2): DP popularity +
# DP item-item Gram factors ("DP PureSVD", ``ml.dp_factors``) composed exactly as Gaussian mechanisms (GDP),
# no DP-SGD (epochs=0: the tower is its initialisation). Rank, M and the popularity weight then follow the
# run's ε (``ml.dp_factors.scheduled_config``). The P1 evaluation uses the same object.
FACTORS_DEFAULTS = ModelConfig(
    epochs=0,
    hidden=16,
    freeze_skip=True,
    factor_rank=16,
    factor_items=300,
    init_content_weights=(0.25, 0.25),
    init_pop_weight=0.3,
)

# The product's defaults for dp_design "tower" (20k-user sweeps in docs/results/model-scale.md);
# the P1 evaluation uses the same object, so what is measured is what tenants get.
TOWER_DEFAULTS = ModelConfig(
    epochs=10,
    hidden=64,
    freeze_skip=False,
    proj_rank=32,
    negatives=2048,
    max_targets=32,
    expected_batch=2048,
    lr=1e-3,
    tau=0.05,
    init_content_weights=(0.5, 0.5),
    init_pop_weight=0.5,
    pop_epsilon_share=0.2,
    max_grad_norm=1.0,
)

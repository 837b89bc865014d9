"""The public-feature two-tower, trained with user-level DP-SGD (Opacus) on sparse data.

Model (score = cosine, as served from pgvector):

* item vector ``v_i = [c_i W, s·pop_i, pad_i]``: ``c_i`` the public BERT content vector, ``W = I + A₂A₁``
  a learned low-rank item projection (the item tower on public features, Krichene et al. 2024),
  ``pop_i`` the DP popularity coordinate and ``pad_i`` a constant-norm pad, so every item vector
  has the same norm and the cosine ranks like the dot product the model is trained on. Every item
  of the catalogue, with or without events, gets its collaborative signal through ``W``.
* user vector ``q_u = MLP(x_u)`` (``towers.UserTower``: linear skip + a ReLU hidden layer) over the
  tower input ``x_u`` of the user's own history (``features.tower_input``), computed in the web
  process from the live state, so each user's newest events shape only that user's ranking.

Privacy guarantee (ε finite): the released parameters (``W``, the MLP) and the popularity release
are (ε, δ)-DP at the USER level:

* one training row per user (:class:`UserRows`), whose input/target split of that user's own
  history is re-drawn each epoch; nothing in a row depends on another user;
* negatives are shared by a step but drawn from a public distribution (uniform mixed with the DP
  popularity release), never from other users' items (in-batch negatives would leak);
* Opacus ``PrivacyEngine``: Poisson sampling (rate q), per-user clipping to ``max_grad_norm`` of the
  gradient of *all* trainable parameters (ghost clipping), Gaussian noise σ·C on the sum;
* ε is computed by the Opacus RDP accountant over the whole history, popularity release included
  (``accounting.calibrate_sgd_noise``): the charged ε bounds both releases together.

Content vectors are public (a public encoder over the tenant's catalogue text) and are used freely.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from . import accounting
from .config import ModelConfig
from .data import Interactions
from .features import FeatureConfig, tower_input_dim
from .sparse import Histories, histories, tower_inputs
from .towers import UserTower
from .train import fit_epochs

__all__ = ["TowerRelease", "negative_distribution", "train_tower"]

ProgressFn = Callable[[int, int, float], None]
StageFn = Callable[[str], None]  # told "popularity", then "dp-sgd" (the caller records the run's stage)


@dataclass
class TowerRelease:
    """Exported weights (``inference`` keys) and the record of what ran."""

    weights: dict[str, np.ndarray]
    private: bool
    noise_multiplier: float
    sample_rate: float
    expected_batch: float
    epochs: int
    steps: int
    max_grad_norm: float | None
    accountant: str | None
    history: list[tuple[float, float, int]]  # DP-SGD part, as the Opacus accountant kept it
    loss_history: list[float]
    trainable_params: int
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)
    processes: int = 1  # the torch.distributed world that trained it (1: one process)


def negative_distribution(pop_counts: np.ndarray, mix: float = 0.5) -> np.ndarray:
    """Sampling distribution of negatives: ``mix`` uniform + the rest ∝ the positive DP counts.

    Post-processing of the DP popularity release (public after it), so negatives never carry
    another user's data.
    """
    n = len(pop_counts)
    pos = np.clip(np.asarray(pop_counts, dtype=np.float64), 0.0, None)
    uni = np.full(n, 1.0 / n)
    if pos.sum() <= 0:
        return uni
    out: np.ndarray = mix * uni + (1.0 - mix) * pos / pos.sum()
    return out


class UserRows:
    """Exactly one row per user: (tower input of the earlier events, up to T target items).

    Per epoch, each user's time-sorted history is split anew: the newest ``frac`` (frac ~
    U(target_frac), at least one event) become targets (items not already in the input part, at
    most ``max_targets`` drawn at random), the rest the input, mimicking the temporal holdout.
    """

    def __init__(
        self,
        h: Histories,
        content: np.ndarray,
        features: FeatureConfig,
        target_frac: tuple[float, float],
        max_targets: int,
        seed: int,
    ) -> None:
        self.h, self.content, self.features = h, content, features
        self.target_frac, self.max_targets, self.seed = target_frac, max_targets, seed
        n = h.data.n_users
        f = tower_input_dim(content.shape[1], features)
        self.dataset = TensorDataset(
            torch.zeros(n, f),
            torch.zeros(n, max_targets, dtype=torch.long),
            torch.zeros(n, max_targets, dtype=torch.bool),
        )

    def resample(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        h, d = self.h, self.h.data
        lengths = h.lengths
        frac = rng.uniform(*self.target_frac, size=len(lengths))
        k = np.minimum(lengths, np.maximum(1, np.rint(frac * lengths).astype(np.int64)))
        cut = lengths - k
        x = tower_inputs(h, self.content, self.features, cut)
        users = d.user[h.order]
        items = d.item[h.order]
        is_target = h.rank >= cut[users]
        n_items = np.int64(max(d.n_items, 1))
        key = users * n_items + items
        tkey = np.unique(key[is_target])
        tkey = tkey[~np.isin(tkey, key[~is_target])]  # an item already in the input is no target
        tkey = tkey[rng.permutation(len(tkey))]
        tkey = tkey[np.argsort(tkey // n_items, kind="stable")]  # by user, random order within
        tu = tkey // n_items
        start = np.searchsorted(tu, tu, side="left")
        pos = np.arange(len(tkey)) - start
        keep = pos < self.max_targets
        t = np.zeros((len(lengths), self.max_targets), dtype=np.int64)
        m = np.zeros((len(lengths), self.max_targets), dtype=bool)
        t[tu[keep], pos[keep]] = tkey[keep] % n_items
        m[tu[keep], pos[keep]] = True
        self.dataset.tensors = (torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(m))


class PublicFeatureTower(nn.Module):
    """Training form of the model: logits of each user's targets and of shared negatives.

    The item projection acts on the user side (``p_u = q_c W^T``, so ``p_u·c_i = q_c·(c_i W)``): every
    trainable parameter then sees a per-user input, which is what Opacus' per-sample clipping needs.
    """

    content: torch.Tensor
    extras: torch.Tensor
    log_q: torch.Tensor

    def __init__(
        self,
        x_dim: int,
        content: np.ndarray,
        extras: np.ndarray,
        q: np.ndarray,
        config: ModelConfig,
        init_content_weights: tuple[float, ...],
        n_channels: int,
    ) -> None:
        super().__init__()
        d = content.shape[1]
        k = extras.shape[1]
        self.d, self.scale = d, 1.0 / config.tau
        self.register_buffer("content", torch.as_tensor(content, dtype=torch.float32))
        self.register_buffer("extras", torch.as_tensor(extras, dtype=torch.float32))
        self.register_buffer("log_q", torch.as_tensor(np.log(q), dtype=torch.float32))
        self.user = UserTower(x_dim, d + k, config.hidden, n_channels=n_channels)
        r = config.proj_rank
        self.proj_in = nn.Linear(d, r, bias=False) if r > 0 else None
        self.proj_out = nn.Linear(r, d, bias=False) if r > 0 else None
        with torch.no_grad():  # start at the "content mean + popularity" heuristic (see train.build_model)
            self.user.skip.weight.zero_()
            self.user.skip.bias.zero_()
            eye = torch.eye(d)
            for c, w in enumerate(init_content_weights[:n_channels]):
                self.user.skip.weight[:d, c * d : (c + 1) * d] = w * eye
            if k:
                self.user.skip.bias[d] = config.init_pop_weight
            if self.proj_in is not None and self.proj_out is not None:
                nn.init.normal_(self.proj_in.weight, std=1.0 / math.sqrt(d))
                nn.init.zeros_(self.proj_out.weight)
        if config.freeze_skip:
            self.user.skip.weight.requires_grad_(False)
        self.negatives = torch.zeros(0, dtype=torch.long)

    def forward(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        q = self.user(x)
        qc, qe = q[:, : self.d], q[:, self.d :]
        p = qc if self.proj_in is None or self.proj_out is None else qc + self.proj_out(self.proj_in(qc))
        ct = self.content[targets]  # (B, T, D)
        lt = torch.bmm(ct, p.unsqueeze(2)).squeeze(2) + torch.bmm(
            self.extras[targets], qe.unsqueeze(2)
        ).squeeze(2)
        neg = self.negatives
        ln = p @ self.content[neg].T + qe @ self.extras[neg].T
        # logQ correction of the sampled softmax, on the scaled logits (Bengio & Senécal 2008)
        out: torch.Tensor = torch.cat(
            [lt * self.scale - self.log_q[targets], ln * self.scale - self.log_q[neg]], dim=1
        )
        return out


class SampledSoftmaxLoss(nn.Module):
    """Per user: mean over its targets of -log softmax over (its targets ∪ shared negatives), logQ-corrected.

    ``reduction`` lets Opacus ghost clipping ask for per-user losses.
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = mask.shape[1]
        lt = logits[:, :t].masked_fill(~mask, -1e9)
        lse = torch.logsumexp(torch.cat([lt, logits[:, t:]], dim=1), dim=1)
        n = mask.sum(dim=1)
        per = -torch.where(mask, lt - lse[:, None], torch.zeros_like(lt)).sum(dim=1) / n.clamp(min=1)
        if self.reduction == "none":
            return per
        if self.reduction == "sum":
            return per.sum()
        return per.mean() if per.numel() else per.sum()


def _export(model: PublicFeatureTower, content: np.ndarray, extras: np.ndarray) -> dict[str, np.ndarray]:
    """Serving weights (``inference`` keys): user MLP with a zero pad row, ``item.proj`` = W, radius."""
    sd = {
        k.replace("_module.", ""): v.detach().cpu().numpy().astype(np.float32)
        for k, v in model.state_dict().items()
    }
    d = content.shape[1]
    w: dict[str, np.ndarray] = {}
    for name in ("user.skip", "user.fc2"):
        if f"{name}.weight" in sd:
            wt, b = sd[f"{name}.weight"], sd[f"{name}.bias"]
            w[f"{name}.weight"] = np.concatenate([wt, np.zeros((1, wt.shape[1]), np.float32)])
            w[f"{name}.bias"] = np.concatenate([b, np.zeros(1, np.float32)])
    if "user.fc1.weight" in sd:
        w["user.fc1.weight"], w["user.fc1.bias"] = sd["user.fc1.weight"], sd["user.fc1.bias"]
    proj = np.eye(d, dtype=np.float32)
    if "proj_in.weight" in sd:  # p = q (I + A1ᵀA2ᵀ)  ⇒  item base c W with W = I + A2 A1
        proj = proj + sd["proj_out.weight"] @ sd["proj_in.weight"]
    w["item.proj"] = proj
    body = np.concatenate([content @ proj, extras], axis=1)
    w["item.radius"] = np.array([float(np.linalg.norm(body, axis=1).max())], dtype=np.float32)
    return w


def train_tower(
    train: Interactions,
    content: np.ndarray,
    extras: np.ndarray,
    pop_counts: np.ndarray,
    config: ModelConfig,
    features: FeatureConfig,
    *,
    noise_multiplier: float | None,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    processes: int = 1,
    threads: int = 0,
) -> TowerRelease:
    """Train the tower; DP-SGD through Opacus when ``noise_multiplier`` is given (else non-private).

    The caller calibrates ``noise_multiplier`` for the whole release (``accounting``) on the
    schedule ``accounting.dp_schedule`` gives for ``config.expected_batch`` and ``config.epochs``: Opacus'
    DPDataLoader samples with rate 1/⌈N/B⌉ for ⌈N/B⌉ steps an epoch, and the run checks that it took
    exactly the steps and rate that were accounted. ``processes`` > 1 runs the same DP-SGD on that
    many torch.distributed processes (``ml.distributed``: Opacus DPDDP over gloo), same accounting.
    """
    if processes > 1:
        from .distributed import train_tower_distributed

        return train_tower_distributed(
            train,
            content,
            extras,
            pop_counts,
            config,
            features,
            noise_multiplier=noise_multiplier,
            seed=seed,
            on_progress=on_progress,
            processes=processes,
            threads=threads,
        )
    return fit_tower(
        train,
        content,
        extras,
        pop_counts,
        config,
        features,
        noise_multiplier=noise_multiplier,
        seed=seed,
        on_progress=on_progress,
    )


def fit_tower(
    train: Interactions,
    content: np.ndarray,
    extras: np.ndarray,
    pop_counts: np.ndarray,
    config: ModelConfig,
    features: FeatureConfig,
    *,
    noise_multiplier: float | None,
    seed: int = 0,
    on_progress: ProgressFn | None = None,
    rank: int | None = None,
) -> TowerRelease:
    """One process's training loop; ``rank`` set = one replica of a torch.distributed group (the
    process group is initialised by the caller; DP-SGD only): the model is wrapped in Opacus' DPDDP,
    each rank Poisson-samples its own shard of the users, rank 0 adds the noise, gradients are
    all-reduced."""
    from opacus import PrivacyEngine

    t0 = time.perf_counter()
    torch.manual_seed(seed)
    private = noise_multiplier is not None
    h = histories(train)
    n_users = train.n_users
    rows = UserRows(h, content, features, config.target_frac, config.max_targets, seed)
    rows.resample(0)
    x_dim = rows.dataset.tensors[0].shape[1]
    q = negative_distribution(pop_counts)
    model = PublicFeatureTower(
        x_dim, content, extras, q, config, config.init_content_weights, features.n_channels
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    crit = SampledSoftmaxLoss()
    batch, sample_rate, planned = accounting.dp_schedule(n_users, config.expected_batch, config.epochs)
    loader = DataLoader(
        rows.dataset, batch_size=batch, shuffle=not private, generator=torch.Generator().manual_seed(seed)
    )
    gen = torch.Generator().manual_seed(seed + 17)
    q_t = torch.as_tensor(q, dtype=torch.float64)
    engine = None
    if private:
        assert noise_multiplier is not None
        from opacus.distributed import DifferentiallyPrivateDistributedDataParallel

        engine = PrivacyEngine(accountant=config.accountant, secure_mode=False)
        module: nn.Module = DifferentiallyPrivateDistributedDataParallel(model) if rank is not None else model
        dp_model, dp_opt, dp_crit, dp_loader = engine.make_private(
            module=module,
            optimizer=opt,
            data_loader=loader,
            criterion=crit,
            noise_multiplier=noise_multiplier,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode="ghost",
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        if rank is not None:
            # Opacus' distributed sampler draws from torch's default generator: one stream per rank,
            # so the replicas' Poisson draws are independent (the shards are disjoint by rank)
            torch.manual_seed(seed * 1009 + 7 + rank)
        run_model, run_opt, run_crit, run_loader = dp_model, dp_opt, dp_crit, dp_loader
    else:
        run_model, run_opt, run_crit, run_loader = model, opt, crit, loader

    def batch_loss(batch: Any) -> Any:
        x, t, m = batch
        # this step's shared negatives, from the public distribution
        model.negatives = torch.multinomial(q_t, config.negatives, replacement=True, generator=gen)
        return run_crit(run_model(x, t), m)

    def before_epoch(epoch: int) -> None:
        if epoch:  # epoch 0's rows were drawn above
            rows.resample(epoch)

    losses_per_epoch: list[float] = []
    steps = fit_epochs(
        run_opt,
        run_loader,
        batch_loss,
        config.epochs,
        losses_per_epoch,
        before_epoch=before_epoch,
        on_progress=on_progress,
    )
    history: list[tuple[float, float, int]] = []
    if engine is not None:
        history = [(float(s), float(r), int(n)) for s, r, n in engine.accountant.history]
        if steps != planned or any(abs(r - sample_rate) > 1e-12 for _, r, _ in history):
            raise RuntimeError(
                f"DP-SGD took {steps} steps at {history}, accounted {planned} at q={sample_rate}"
            )
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}
    return TowerRelease(
        weights=_export(model, content, extras),
        private=private,
        noise_multiplier=float(noise_multiplier or 0.0),
        sample_rate=float(sample_rate),
        expected_batch=batch,
        epochs=config.epochs,
        steps=steps,
        max_grad_norm=config.max_grad_norm if private else None,
        accountant=config.accountant if private else None,
        history=history,
        loss_history=losses_per_epoch,
        trainable_params=sum(p.numel() for p in params),
        seconds=time.perf_counter() - t0,
        config=cfg,
        processes=torch.distributed.get_world_size() if rank is not None else 1,
    )


def release_tower(
    train: Interactions,
    content: np.ndarray,
    config: ModelConfig,
    features: FeatureConfig,
    epsilon: float,
    delta: float,
    seed: int,
    on_progress: ProgressFn | None = None,
    processes: int = 1,
    threads: int = 0,
    on_stage: StageFn | None = None,
) -> tuple[TowerRelease, np.ndarray, Any, dict[str, Any], float]:
    """The whole "tower" release for (ε, δ): DP popularity, then DP-SGD calibrated so that both
    together, composed by the Opacus accountant, spend at most ε. ε = inf trains without noise
    (in one process); ``processes`` > 1 runs the DP-SGD on that many ranks (``ml.distributed``).
    ``on_stage`` is told ``"popularity"`` and ``"dp-sgd"`` as each begins; ``on_progress`` after
    every epoch.

    Returns (training result, item extras, popularity release, the record of what ran, composed ε).
    """
    from .popularity import dp_popularity, popularity_feature

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    stage("popularity")
    if not math.isfinite(epsilon):
        pop = dp_popularity(
            train.user, train.item, train.n_items, math.inf, 0.0, cap=config.pop_cap, seed=seed
        )
        extras = popularity_feature(pop.counts)[:, None]
        stage("dp-sgd")
        res = train_tower(
            train,
            content,
            extras,
            pop.counts,
            config,
            features,
            noise_multiplier=None,
            seed=seed,
            on_progress=on_progress,
        )
        return (
            res,
            extras,
            pop,
            {
                "design": "tower",
                "private": False,
                "mechanism": "two-tower SGD (non-private)",
                "mechanisms": [
                    {"name": "popularity", "noise": "none (non-private)"},
                    {"name": "two-tower SGD (non-private)", "epochs": res.epochs, "steps": res.steps},
                ],
            },
            math.inf,
        )
    sigma_pop = accounting.gaussian_sigma(config.pop_epsilon_share * epsilon, delta)
    fixed = [(sigma_pop, 1.0, 1)]  # the popularity release: one Gaussian, sensitivity 1, no sampling
    _, q, steps = accounting.dp_schedule(train.n_users, config.expected_batch, config.epochs)
    sigma = accounting.calibrate_sgd_noise(
        epsilon=epsilon, delta=delta, fixed=fixed, sample_rate=q, steps=steps, accountant=config.accountant
    )
    pop = dp_popularity(
        train.user, train.item, train.n_items, epsilon, delta, cap=config.pop_cap, seed=seed, sigma=sigma_pop
    )
    extras = popularity_feature(pop.counts, sigma_pop)[:, None]
    stage("dp-sgd")
    res = train_tower(
        train,
        content,
        extras,
        pop.counts,
        config,
        features,
        noise_multiplier=sigma,
        seed=seed,
        on_progress=on_progress,
        processes=processes,
        threads=threads,
    )
    history = fixed + res.history
    eps_total = accounting.history_epsilon(history, delta, config.accountant)
    other = accounting.other_accountant(config.accountant)
    release = {
        "design": "tower",
        "private": True,
        "mechanism": "gaussian popularity + DP-SGD (Opacus) of the public-feature two-tower",
        "accountant": f"{config.accountant.upper()} (Opacus), popularity and DP-SGD composed",
        "mechanisms": [
            {
                "name": "gaussian popularity",
                "sigma": sigma_pop,
                "sensitivity": 1.0,
                "cap": config.pop_cap,
                "epsilon_alone": config.pop_epsilon_share * epsilon,
            },  # analytic Gaussian calibration
            {
                "name": "DP-SGD (Opacus, Poisson sampling, per-user ghost clipping)",
                "noise_multiplier": sigma,
                "sample_rate": q,
                "expected_batch": res.expected_batch,
                "steps": res.steps,
                "epochs": res.epochs,
                "clip_norm": config.max_grad_norm,
                "trainable_parameters": res.trainable_params,
                "epsilon_alone": accounting.history_epsilon(res.history, delta, config.accountant),
            },
        ],
        "epsilon_composed": eps_total,
        f"epsilon_composed_{other}": accounting.history_epsilon(history, delta, other),
        "history": [list(h) for h in history],
        "delta": delta,
        "users_released": train.n_users,
        "noise_multiplier": sigma,
        "sample_rate": q,
        "steps": res.steps,
        "epochs": res.epochs,
        "clip_norm": config.max_grad_norm,
        "processes": res.processes,
        "engine": ("torch.distributed (gloo) + Opacus DPDDP" if res.processes > 1 else "one process"),
    }
    return res, extras, pop, release, eps_total

"""Training of the Sotto two-tower model, non-private or user-level DP (Opacus).

Privacy guarantee (epsilon finite): the released weights are
(epsilon_sgd, delta)-DP at the USER level w.r.t. the training interactions.
Why it holds:

* the training set has exactly one row per user (``TrainRows``; length ==
  n_users); a row's input/target split of the user's history is re-drawn
  every epoch, but a user never contributes more than one row to a step;
* batches are drawn by Poisson sampling (Opacus ``DPDataLoader``, rate q);
* each row's gradient is clipped to ``max_grad_norm`` (flat clipping over all
  trainable parameters) and Gaussian noise N(0, (sigma*C)^2) is added to the
  sum; sigma comes from the target epsilon with ``get_noise_multiplier``;
* all trainable parameters live in the user tower (``learn_items`` and
  ``item_id_emb`` are refused under DP); item-side inputs are public BERT
  vectors and features released under their own DP guarantee (popularity,
  charged separately, see ``popularity.py``), which is post-processing here.

Preprocessing that looks at all users (e.g. normalising the noisy popularity)
uses only DP outputs or public data.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .accounting import history_epsilon, other_accountant
from .data import Interactions, user_histories
from .features import FeatureConfig, history_weights, scalar_features
from .towers import ItemTower, ModelConfig, SoftmaxTargetLoss, SottoModel, UserTower

__all__ = [
    "TrainData",
    "TrainResult",
    "TrainRows",
    "build_model",
    "export_weights",
    "fit_epochs",
    "measure_epoch_time",
    "train_model",
    "user_inputs",
]

ProgressFn = Callable[[int, int, float], None]


@dataclass
class TrainData:
    """Everything training needs, as arrays (content aligned to item indices)."""

    train: Interactions
    content: np.ndarray  # (n_items, D) L2-normalised public content vectors
    item_extras: np.ndarray  # (n_items, K) fixed extra item features (DP popularity, ...)
    features: FeatureConfig = field(default_factory=FeatureConfig)


@dataclass
class TrainResult:
    """Trained weights plus the privacy ledger of the run."""

    weights: dict[str, np.ndarray]
    epsilon: float | None  # per the chosen accountant; None = non-private
    epsilon_other: float | None  # the other accountant (rdp <-> prv)
    delta: float | None
    noise_multiplier: float
    sample_rate: float
    epochs: int
    steps: int
    max_grad_norm: float | None
    n_users: int
    accountant: str | None
    loss_history: list[float]
    grad_sample_mode: str | None = None
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)


def _user_block(
    hist: np.ndarray, train: Interactions, content: np.ndarray, cfg: FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(x, weights (C, n)) for a time-sorted list of interaction rows."""
    items = train.item[hist]
    w = history_weights(train.rating[hist], train.ts[hist], cfg)
    ws = w.sum(axis=1, keepdims=True)
    ws[ws == 0] = 1.0
    wn = w / ws
    means = (
        (wn @ content[items].astype(np.float64)).ravel()
        if len(hist)
        else np.zeros(cfg.n_channels * content.shape[1])
    )
    anchor = float(train.ts[hist].max()) if len(hist) else 0.0
    scal = scalar_features(len(hist), float(train.rating[hist].sum()), anchor, cfg)
    return np.concatenate([means, scal]).astype(np.float32), wn


def user_inputs(
    data: TrainData, rows: list[np.ndarray] | None = None, with_h: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Tower inputs from each user's FULL history (evaluation / serving parity).

    Returns x (n_users, F), h (n_users, C, n_items) if ``with_h`` and the
    history mask (n_users, n_items).
    """
    hists = rows if rows is not None else user_histories(data.train)
    n_items = data.train.n_items
    cfg = data.features
    xs = []
    h = np.zeros((len(hists), cfg.n_channels, n_items), dtype=np.float32) if with_h else None
    mask = np.zeros((len(hists), n_items), dtype=bool)
    for u, hist in enumerate(hists):
        x, wn = _user_block(hist, data.train, data.content, cfg)
        xs.append(x)
        items = data.train.item[hist]
        mask[u, items] = True
        if h is not None:
            for c in range(cfg.n_channels):
                np.add.at(h[u, c], items, wn[c])
    return np.stack(xs), h, mask


class TrainRows(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Exactly one row per user; the input/target split is re-drawn per epoch.

    Row = (x, h, mask, target): the earlier part of the user's (time-sorted)
    training history is the input, the last ``frac`` (frac ~ U(target_frac),
    >= 1 event) the target, mimicking P1's temporal hold-out.
    """

    def __init__(self, data: TrainData, target_frac: tuple[float, float], with_h: bool, seed: int) -> None:
        self.data = data
        self.hists = user_histories(data.train)
        self.target_frac = target_frac
        self.with_h = with_h
        self.seed = seed
        self.resample(0)

    def __len__(self) -> int:
        return len(self.hists)

    def resample(self, epoch: int) -> None:
        rng = np.random.default_rng([self.seed, epoch])
        d = self.data
        n_items = d.train.n_items
        inputs, targets = [], []
        for hist in self.hists:
            n = len(hist)
            frac = rng.uniform(*self.target_frac)
            k = min(n, max(1, round(float(frac * n))))
            inputs.append(hist[: n - k])
            targets.append(hist[n - k :])
        x, h, mask = user_inputs(d, inputs, self.with_h)
        t = np.zeros((len(self.hists), n_items), dtype=np.float32)
        for u, tgt in enumerate(targets):
            items = np.setdiff1d(d.train.item[tgt], d.train.item[inputs[u]])
            if len(items):
                t[u, items] = 1.0 / len(items)
        self.x = torch.from_numpy(x)
        self.h = torch.from_numpy(h) if h is not None else torch.zeros(len(self.hists), 1)
        self.mask = torch.from_numpy(mask)
        self.t = torch.from_numpy(t)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.x[i], self.h[i], self.mask[i], self.t[i]


def build_model(data: TrainData, config: ModelConfig) -> SottoModel:
    """Model initialised to the "content mean + popularity" heuristic.

    Why: under DP few gradient steps survive the noise, so the starting point
    should already be a sensible recommender (skip layer copies the content
    means into the query, the popularity coordinate gets ``init_pop_weight``,
    MLP output starts at zero).
    """
    cfg = data.features
    d = data.content.shape[1]
    x_dim = cfg.n_channels * d + 2 + int(cfg.use_time_feature)
    item = ItemTower(data.content, data.item_extras, config.learn_items, config.item_id_emb)
    user = UserTower(x_dim, item.out_dim, config.hidden, data.train.n_items, config.emb_dim, cfg.n_channels)
    with torch.no_grad():
        user.skip.weight.zero_()
        user.skip.bias.zero_()
        eye = torch.eye(d)
        for c, w in enumerate(config.init_content_weights[: cfg.n_channels]):
            user.skip.weight[:d, c * d : (c + 1) * d] = w * eye
        if data.item_extras.shape[1] > 0:
            user.skip.bias[d] = config.init_pop_weight
        r = config.factor_rank
        if r > 0:
            if data.item_extras.shape[1] != r + 2:
                raise ValueError("factor_rank > 0 needs extras [pop, factors (rank), pad]")
            from .dp_factors import content_projection

            fac = data.item_extras[:, 1 : 1 + r].astype(np.float64)
            rows = np.flatnonzero(np.abs(fac).sum(axis=1) > 0)
            if len(rows):
                a = content_projection(data.content, fac, rows, config.factor_ridge)  # (D, r)
                # scale so the projected factor block has the norm of the content block on the factor items
                proj = np.linalg.norm(data.content[rows].astype(np.float64) @ a, axis=1).mean()
                a = a / max(float(proj), 1e-12)
                # first (no-decay) channel's content mean -> factor coordinates d+1 .. d+r
                user.skip.weight[d + 1 : d + 1 + r, :d] = torch.as_tensor(
                    config.init_factor_weight * a.T, dtype=torch.float32
                )
    if config.freeze_skip:
        user.skip.weight.requires_grad_(False)
    return SottoModel(user, item, config.tau)


def export_weights(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """Trainable + buffer-free weights as numpy (Opacus ``_module.`` prefix stripped)."""
    out: dict[str, np.ndarray] = {}
    for k, v in model.state_dict().items():
        k = k.replace("_module.", "")
        if k in ("item.content", "item.extras"):
            continue
        out[k] = v.detach().cpu().numpy().copy()
    return out


def fit_epochs(
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[Any],
    batch_loss: Callable[[Any], Any],
    epochs: int,
    history: list[float],
    *,
    before_epoch: Callable[[int], None] | None = None,
    on_progress: ProgressFn | None = None,
) -> int:
    """The one training loop, the same with or without DP (here and in ``ml.tower``): the caller hands it
    either the plain optimizer and loader, or the ones Opacus' ``make_private`` wrapped them in
    (Poisson loader; per-user clipping and noise in the optimizer), and ``batch_loss`` computing a
    batch's loss with the matching (wrapped) model and criterion. ``before_epoch(epoch)`` runs first
    in each epoch. Appends each epoch's mean loss to ``history`` (NaN for an epoch whose Poisson draws
    were all empty) and tells ``on_progress`` (epoch, epochs, loss); returns the steps taken."""
    steps = 0
    for ep in range(epochs):
        if before_epoch is not None:
            before_epoch(ep)
        losses = []
        for batch in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = batch_loss(batch)
            loss.backward()
            optimizer.step()
            steps += 1
            if len(batch[0]):
                losses.append(float(loss.item()))
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if on_progress is not None:
            on_progress(ep + 1, epochs, history[-1])
    return steps


def train_model(
    config: ModelConfig,
    dataset: TrainData,
    seed: int = 0,
    epsilon: float | None = None,
    delta: float | None = None,
    on_progress: ProgressFn | None = None,
) -> TrainResult:
    """Train the two-tower model; DP-SGD (user level) when ``epsilon`` is finite.

    ``delta`` defaults to 1/n_users (the upper bound agreed for Sotto).
    ``epsilon`` here is the DP-SGD share only; callers that also release DP
    popularity add its epsilon on top (basic composition).
    """
    from opacus import PrivacyEngine
    from opacus.accountants.utils import get_noise_multiplier

    t_start = time.perf_counter()
    torch.manual_seed(seed)
    np.random.seed(seed)
    private = epsilon is not None and math.isfinite(epsilon)
    if private and (config.learn_items or config.item_id_emb):
        raise ValueError("DP training supports the fixed (seed) item side only")
    n_users = dataset.train.n_users
    delta = (1.0 / n_users) if (private and delta is None) else delta
    model = build_model(dataset, config)
    rows = TrainRows(dataset, config.target_frac, config.emb_dim > 0, seed)
    opt = torch.optim.Adam(
        [p for p in model.parameters() if p.requires_grad], lr=config.lr, weight_decay=config.weight_decay
    )
    crit = SoftmaxTargetLoss()
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    noise = 0.0
    eps_spent = eps_other = None
    steps = 0
    if config.epochs == 0:
        # no gradient step: the weights are the initialisation, a function of public content and
        # the DP item extras only (post-processing), so no privacy is spent here
        sample_rate = 0.0
        weights = export_weights(model)
        eps_spent = eps_other = 0.0 if private else None
    elif private:
        assert epsilon is not None and delta is not None
        bs = max(1, round(float(config.sample_rate * n_users)))
        loader = DataLoader(rows, batch_size=bs, shuffle=False, generator=gen)
        q = 1.0 / len(loader)
        total_steps = config.epochs * len(loader)
        if total_steps <= 0:
            raise ValueError("DP training needs at least one step (epochs >= 1)")
        noise = get_noise_multiplier(
            target_epsilon=float(epsilon),
            target_delta=delta,
            sample_rate=q,
            steps=total_steps,
            accountant=config.accountant,
        )
        engine = PrivacyEngine(accountant=config.accountant, secure_mode=False)
        out = engine.make_private(
            module=model,
            optimizer=opt,
            data_loader=loader,
            criterion=crit,
            noise_multiplier=noise,
            max_grad_norm=config.max_grad_norm,
            poisson_sampling=True,
            grad_sample_mode=config.grad_sample_mode,
            noise_generator=torch.Generator().manual_seed(seed + 1),
        )
        if config.grad_sample_mode == "ghost":
            dp_model, dp_opt, dp_crit, dp_loader = out
        else:
            dp_model, dp_opt, dp_loader = out
            dp_crit = crit
        sample_rate = float(dp_loader.sample_rate)
        steps = fit_epochs(
            dp_opt,
            dp_loader,
            lambda b: dp_crit(dp_model(*b[:3]), b[3]),
            config.epochs,
            history,
            before_epoch=rows.resample,
            on_progress=on_progress,
        )
        eps_spent = float(engine.accountant.get_epsilon(delta))
        eps_other = history_epsilon(engine.accountant.history, delta, other_accountant(config.accountant))
        weights = export_weights(dp_model)
    else:
        loader = DataLoader(rows, batch_size=config.batch_size, shuffle=True, generator=gen)
        sample_rate = min(1.0, config.batch_size / n_users)
        steps = fit_epochs(
            opt,
            loader,
            lambda b: crit(model(*b[:3]), b[3]),
            config.epochs,
            history,
            before_epoch=rows.resample,
            on_progress=on_progress,
        )
        weights = export_weights(model)
    cfg_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()}
    return TrainResult(
        weights=weights,
        epsilon=eps_spent,
        epsilon_other=eps_other,
        delta=delta if private else None,
        noise_multiplier=float(noise),
        sample_rate=float(sample_rate),
        epochs=config.epochs,
        steps=steps,
        max_grad_norm=config.max_grad_norm if private else None,
        n_users=n_users,
        accountant=config.accountant if private else None,
        loss_history=history,
        grad_sample_mode=config.grad_sample_mode if private else None,
        seconds=time.perf_counter() - t_start,
        config=cfg_dict,
    )


def measure_epoch_time(
    config: ModelConfig, dataset: TrainData, epochs: int = 2, seed: int = 0, epsilon: float = 8.0
) -> dict[str, float | str]:
    """Wall time per epoch of DP vs non-private training at the same batch size.

    For a fair comparison the non-private run uses the DP expected batch size.
    Returns seconds per epoch and the ratio (goal: dp/non-private <= 1.3).
    """
    bs = max(1, round(float(config.sample_rate * dataset.train.n_users)))
    cfg = replace(config, epochs=epochs, batch_size=bs)
    t0 = time.perf_counter()
    train_model(cfg, dataset, seed=seed, epsilon=None)
    t_np = (time.perf_counter() - t0) / epochs
    t0 = time.perf_counter()
    train_model(cfg, dataset, seed=seed, epsilon=epsilon)
    t_dp = (time.perf_counter() - t0) / epochs
    return {
        "nonprivate_s_per_epoch": t_np,
        "dp_s_per_epoch": t_dp,
        "ratio": t_dp / t_np,
        "grad_sample_mode": config.grad_sample_mode,
    }

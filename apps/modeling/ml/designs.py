"""The DP designs a training run can use, behind one protocol (:class:`ReleaseDesign`).

A design decides what a run releases from a tenant's interactions and how that is accounted:

* ``"factors"`` (:class:`FactorsDesign`, small tenants): DP popularity + DP item-item Gram
  ("DP PureSVD", ``ml.dp_factors``), two Gaussian releases composed exactly as GDP; no gradient
  step, the tower is its initialisation.
* ``"tower"`` (:class:`TowerDesign`, from ``run_config.TOWER_MIN_USERS`` users): DP popularity +
  DP-SGD through Opacus of the public-feature two-tower (``ml.tower``), composed by Opacus' accountant.

Each design gives the plan of a run before it reads any data (:meth:`ReleaseDesign.plan`, the
details of the run's ledger charge) and then releases (:meth:`ReleaseDesign.release`), spending at
most the charged (ε, δ); ε = inf trains the non-private model. Both use ``ml.accounting`` for every
ε and σ. Importing this module does not import torch (the web process reads the plans).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from . import accounting
from .config import ModelConfig
from .data import Interactions
from .features import FeatureConfig

__all__ = ["DESIGNS", "FactorsDesign", "ReleaseDesign", "Released", "TowerDesign", "release_design"]

StageFn = Callable[[str], None]  # told "popularity", then "gram" or "dp-sgd", as each release begins
EpochFn = Callable[[int, int, float], None]  # (epoch, epochs, mean loss) after every DP-SGD epoch


@dataclass(frozen=True)
class Released:
    """What a design released for one run, and what it cost."""

    weights: dict[str, np.ndarray]  # the tower, ``ml.inference`` keys
    extras: np.ndarray  # (n_items, K) item extras of the version (DP popularity, factors, pad)
    cold_extras: np.ndarray  # (K,) extras row of items outside the universe
    pop_counts: np.ndarray  # the DP popularity release (cold start, baseline, stored with the version)
    sigma_pop: float  # its noise (0.0: non-private)
    record: dict[str, Any]  # design, mechanisms with their ε/σ, accountant (ledger, API, admin)
    epsilon_spent: float  # every release of the run composed; inf = non-private
    loss_history: list[float] = field(default_factory=list)
    epochs: int = 0
    steps: int = 0


class ReleaseDesign(Protocol):
    """One DP design: its plan (at charge time, no data) and its release (in the worker)."""

    name: str

    def plan(self, config: Mapping[str, Any], epsilon: float, delta: float, n_users: int) -> dict[str, Any]:
        """What a run with this run configuration will release for (ε, δ) (ledger entry details)."""
        ...

    def release(
        self,
        train: Interactions,
        content: np.ndarray,
        config: ModelConfig,
        features: FeatureConfig,
        epsilon: float,
        delta: float,
        seed: int,
        *,
        on_stage: StageFn | None = None,
        on_epoch: EpochFn | None = None,
        max_processes: int = 1,
        threads: int = 0,
    ) -> Released:
        """Release from ``train`` for at most (ε, δ), user-level."""
        ...


class FactorsDesign:
    """DP popularity + DP item-item Gram (GDP); the tower is its initialisation (no gradient step)."""

    name = "factors"

    def plan(self, config: Mapping[str, Any], epsilon: float, delta: float, n_users: int) -> dict[str, Any]:
        return {
            "design": "factors",
            "mechanism": "gaussian popularity + gaussian item-item gram (DP PureSVD), no DP-SGD",
            **accounting.factor_release_plan(float(config["factor_share"]), epsilon, delta),
            "factor_rank": config["factor_rank"],
            "factor_items": config["factor_items"],
            "pop_cap": config["pop_cap"],
            "sensitivity": 1.0,
            "delta": delta,
            "epochs": 0,
            "accountant": accounting.GDP_ACCOUNTANT,
            "composition": "GDP (exact)",
        }

    def release(
        self,
        train: Interactions,
        content: np.ndarray,
        config: ModelConfig,
        features: FeatureConfig,
        epsilon: float,
        delta: float,
        seed: int,
        *,
        on_stage: StageFn | None = None,
        on_epoch: EpochFn | None = None,
        max_processes: int = 1,
        threads: int = 0,
    ) -> Released:
        import torch

        from .dp_factors import release_item_extras
        from .train import TrainData, build_model, export_weights

        if config.epochs != 0:
            raise ValueError("dp_design 'factors' spends the whole budget on its releases: epochs must be 0")
        m = min(config.factor_items, train.n_items)
        mc = replace(
            config, factor_rank=min(config.factor_rank, m)
        )  # a tiny catalogue has fewer eigenvectors
        rel = release_item_extras(
            train.user,
            train.item,
            train.n_items,
            epsilon,
            delta,
            mc,
            seed=seed,
            on_stage=on_stage,
            content=content,
        )
        # seeded like train.train_model (the P1 rows), without touching the caller's global torch RNG:
        # the same run seed gives the same weights, whatever ran in this worker before
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            weights = export_weights(build_model(TrainData(train, content, rel.extras), mc))
        cold = np.zeros(rel.extras.shape[1], dtype=np.float32)
        cold[-1] = float(np.linalg.norm(rel.extras, axis=1).max())  # pad: same norm as every other row
        released = Released(
            weights=weights,
            extras=rel.extras,
            cold_extras=cold,
            pop_counts=rel.pop_counts,
            sigma_pop=rel.sigma_pop,
            record={},
            epsilon_spent=math.inf,
        )
        if not math.isfinite(epsilon):
            return replace(
                released,
                record={
                    "design": "factors",
                    "private": False,
                    "mechanisms": [
                        {"name": "popularity + item-item gram (PureSVD)", "noise": "none (non-private)"}
                    ],
                },
            )
        if rel.sigma_gram is None or rel.epsilon_sgd is not None:
            raise AssertionError("the factors design releases a Gram and no DP-SGD")
        plan = accounting.factor_release_plan(mc.factor_share, epsilon, delta)
        mu = math.sqrt(1.0 / rel.sigma_pop**2 + 1.0 / rel.sigma_gram**2)
        eps_total = accounting.gaussian_epsilon(1.0 / mu, delta)
        record = {
            "design": "factors",
            "private": True,
            "mechanism": "gaussian popularity + gaussian item-item gram (DP PureSVD), no DP-SGD",
            "accountant": accounting.GDP_ACCOUNTANT,
            **plan,
            "mechanisms": [
                {
                    "name": "gaussian popularity",
                    "sigma": rel.sigma_pop,
                    "sensitivity": 1.0,
                    "cap": mc.pop_cap,
                    "epsilon_alone": accounting.gaussian_epsilon(rel.sigma_pop, delta),
                },
                {
                    "name": "gaussian item-item gram (DP PureSVD)",
                    "sigma": rel.sigma_gram,
                    "sensitivity": 1.0,
                    "items": m,
                    "rank": mc.factor_rank,
                    "epsilon_alone": accounting.gaussian_epsilon(rel.sigma_gram, delta),
                },
            ],
            "sigma_pop": rel.sigma_pop,
            "sigma_gram": rel.sigma_gram,
            "mu_total": mu,
            "epsilon_composed": eps_total,
            "delta": delta,
            "factor_rank": mc.factor_rank,
            "factor_items": m,
            "pop_cap": mc.pop_cap,
            "sensitivity": 1.0,
            "users_released": train.n_users,
            "epochs": 0,
            "steps": 0,
        }
        return replace(released, record=record, epsilon_spent=eps_total)


class TowerDesign:
    """DP popularity + DP-SGD (Opacus) of the public-feature two-tower, composed by Opacus' accountant."""

    name = "tower"

    def plan(self, config: Mapping[str, Any], epsilon: float, delta: float, n_users: int) -> dict[str, Any]:
        batch, q, steps = accounting.dp_schedule(
            n_users, int(config["expected_batch"]), int(config["epochs"])
        )
        return {
            "design": "tower",
            "mechanism": "gaussian popularity + DP-SGD (Opacus, Poisson, user level) of the public-feature two-tower",
            "epsilon_pop_alone": float(config["pop_epsilon_share"]) * epsilon,
            "delta": delta,
            "sample_rate": q,
            "expected_batch": batch,
            "steps": steps,
            "epochs": config["epochs"],
            "clip_norm": config["max_grad_norm"],
            "accountant": config["accountant"],
            "composition": f"{config['accountant']} (Opacus) over popularity + DP-SGD; noise calibrated on the users "
            "at training time",
        }

    def release(
        self,
        train: Interactions,
        content: np.ndarray,
        config: ModelConfig,
        features: FeatureConfig,
        epsilon: float,
        delta: float,
        seed: int,
        *,
        on_stage: StageFn | None = None,
        on_epoch: EpochFn | None = None,
        max_processes: int = 1,
        threads: int = 0,
    ) -> Released:
        from .distributed import usable_processes
        from .tower import release_tower

        # one tenant's DP-SGD on N torch.distributed processes (gloo), if the operator asks and N fits
        procs = usable_processes(train.n_users, config.expected_batch, max_processes)
        res, extras, pop, record, eps_total = release_tower(
            train,
            content,
            config,
            features,
            epsilon,
            delta,
            seed,
            on_epoch,
            processes=procs,
            threads=threads,
            on_stage=on_stage,
        )
        return Released(
            weights=res.weights,
            extras=extras,
            cold_extras=np.zeros(extras.shape[1], dtype=np.float32),  # no released count; the pad is per row
            pop_counts=pop.counts,
            sigma_pop=pop.sigma,
            record=record,
            epsilon_spent=eps_total,
            loss_history=res.loss_history,
            epochs=res.epochs,
            steps=res.steps,
        )


DESIGNS: dict[str, ReleaseDesign] = {"factors": FactorsDesign(), "tower": TowerDesign()}


def release_design(name: str) -> ReleaseDesign:
    """The design of a run's ``config["dp_design"]``; ``ValueError`` for an unknown name."""
    try:
        return DESIGNS[name]
    except KeyError:
        raise ValueError(f"unknown dp_design {name!r}") from None

"""The release designs behind one protocol (``ml.designs``): names, plans, refusals (no Django)."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import pytest

from apps.modeling.ml import accounting
from apps.modeling.ml.config import TOWER_DEFAULTS, ModelConfig
from apps.modeling.ml.data import from_arrays
from apps.modeling.ml.designs import DESIGNS, FactorsDesign, release_design
from apps.modeling.ml.features import FeatureConfig


def test_each_design_is_found_by_its_name_and_an_unknown_one_is_refused() -> None:
    assert sorted(DESIGNS) == ["factors", "tower"]
    assert all(release_design(name).name == name for name in DESIGNS)
    with pytest.raises(ValueError, match="unknown dp_design"):
        release_design("dpsgd")  # aliases are resolved by run_config, never here


def test_the_plans_are_the_accounting_of_each_design() -> None:
    factors = {**asdict(ModelConfig(epochs=0, factor_rank=16, factor_items=300)), "dp_design": "factors"}
    plan = release_design("factors").plan(factors, 2.0, 1e-6, 400)
    sigma_pop, sigma_gram = accounting.split_gaussian_sigmas(2.0, 1e-6, [0.4, 0.6])
    assert (plan["sigma_pop"], plan["sigma_gram"]) == (sigma_pop, sigma_gram)
    assert plan["accountant"] == accounting.GDP_ACCOUNTANT and plan["epochs"] == 0
    tower = {**asdict(TOWER_DEFAULTS), "dp_design": "tower"}
    plan = release_design("tower").plan(tower, 4.0, 1e-6, 100_000)
    assert (plan["expected_batch"], plan["sample_rate"], plan["steps"]) == accounting.dp_schedule(
        100_000, 2048, 10
    )
    assert plan["epsilon_pop_alone"] == pytest.approx(0.2 * 4.0)


def test_the_factors_design_refuses_gradient_steps_and_spends_at_most_its_budget() -> None:
    rng = np.random.default_rng(0)
    user, item = rng.integers(0, 40, 400), rng.integers(0, 30, 400)
    train = from_arrays(user, item, np.ones(400, np.float32), np.arange(400, dtype=np.float64))
    content = rng.normal(size=(train.n_items, 8)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    config = ModelConfig(epochs=0, hidden=4, factor_rank=4, factor_items=20)
    with pytest.raises(ValueError, match="epochs must be 0"):
        FactorsDesign().release(
            train, content, ModelConfig(epochs=1, factor_rank=4), FeatureConfig(), 1.0, 1e-3, 0
        )
    released = FactorsDesign().release(train, content, config, FeatureConfig(), 1.0, 1 / 40, 0)
    assert released.epsilon_spent <= 1.0 + 1e-9 and released.record["design"] == "factors"
    assert released.cold_extras[-1] == pytest.approx(np.linalg.norm(released.extras, axis=1).max())
    free = FactorsDesign().release(train, content, config, FeatureConfig(), math.inf, 0.0, 0)
    assert free.epsilon_spent == math.inf and free.record["private"] is False and free.sigma_pop == 0.0


def test_the_factors_weights_follow_the_run_seed_not_the_workers_torch_state() -> None:
    import torch

    rng = np.random.default_rng(1)
    user, item = rng.integers(0, 40, 400), rng.integers(0, 30, 400)
    train = from_arrays(user, item, np.ones(400, np.float32), np.arange(400, dtype=np.float64))
    content = rng.normal(size=(train.n_items, 8)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    config = ModelConfig(epochs=0, hidden=4, factor_rank=4, factor_items=20)
    released = []
    for global_seed in (123, 456):
        torch.manual_seed(global_seed)  # whatever ran in this worker before
        before = torch.random.get_rng_state()
        released.append(FactorsDesign().release(train, content, config, FeatureConfig(), 2.0, 1 / 40, 7))
        assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is left alone
    first, second = released
    assert first.weights.keys() == second.weights.keys()
    for name in first.weights:
        np.testing.assert_array_equal(first.weights[name], second.weights[name])

"""DP item factors: sensitivity of the Gram release, exact Gaussian composition, budget split, no-SGD path."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from apps.modeling.ml.accounting import gaussian_delta, gaussian_sigma, split_gaussian_sigmas
from apps.modeling.ml.config import ModelConfig
from apps.modeling.ml.data import from_arrays
from apps.modeling.ml.dp_factors import (
    cover_all_items,
    dp_item_factors,
    factor_extras,
    release_item_extras,
    user_gram,
)


def _log(seed: int = 0, n_users: int = 30, n_items: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users, items = [], []
    for u in range(n_users):
        k = int(rng.integers(1, 25))
        for i in rng.choice(n_items, size=k, replace=False):
            users.append(u)
            items.append(int(i))
    return np.array(users), np.array(items)


def test_gram_sensitivity_is_one_in_frobenius_and_upper_triangle() -> None:
    user, item = _log()
    m = 25
    pos = np.full(40, -1)
    pos[np.arange(m)] = np.arange(m)
    full = user_gram(user, item, pos, m)
    for u in range(30):
        keep = user != u
        diff = full - user_gram(user[keep], item[keep], pos, m)
        if np.any(item[~keep] < m):  # the user touches the factor items
            assert np.linalg.norm(diff) == pytest.approx(1.0)
        upper = diff[np.triu_indices(m)]
        assert np.linalg.norm(upper) <= 1.0 + 1e-12  # what the Gaussian noise is calibrated to


def test_gram_noise_has_the_requested_sigma_and_is_symmetric() -> None:
    user, item = _log()
    items = np.arange(40)
    exact = dp_item_factors(user, item, 40, items, 40, 0.0)
    noisy = dp_item_factors(user, item, 40, items, 40, 2.0, seed=3)
    assert noisy.sigma == 2.0 and exact.sigma == 0.0
    g0 = (exact.factors * exact.eigenvalues) @ exact.factors.T
    g1 = (noisy.factors * noisy.eigenvalues) @ noisy.factors.T
    e = g1 - g0
    assert np.allclose(e, e.T, atol=1e-8)
    assert np.std(e[np.triu_indices(40)]) == pytest.approx(2.0, rel=0.1)


@pytest.mark.parametrize("eps", [1.0, 8.0])
def test_split_sigmas_compose_exactly_to_the_total_budget(eps: float) -> None:
    delta = 1.0 / 610
    s_pop, s_gram = split_gaussian_sigmas(eps, delta, [0.4, 0.6])
    mu = math.sqrt(1 / s_pop**2 + 1 / s_gram**2)  # GDP composition of two sensitivity-1 Gaussians
    assert gaussian_delta(1 / mu, eps) == pytest.approx(delta, rel=1e-6)
    assert 1 / mu == pytest.approx(gaussian_sigma(eps, delta))
    with pytest.raises(ValueError):
        split_gaussian_sigmas(eps, delta, [0.5, 0.6])


def test_release_budget_split_factor_and_legacy_designs() -> None:
    user, item = _log()
    delta = 1 / 30
    fac = ModelConfig(epochs=0, factor_rank=4, factor_items=20)
    rel = release_item_extras(user, item, 40, 2.0, delta, fac)
    assert (rel.epsilon, rel.delta, rel.epsilon_sgd) == (2.0, delta, None)  # everything to the releases
    assert rel.sigma_gram is not None
    total = gaussian_sigma(2.0, delta)
    assert 1 / rel.sigma_pop**2 + 1 / rel.sigma_gram**2 == pytest.approx(1 / total**2)
    assert rel.extras.shape == (40, 4 + 2)
    with_sgd = release_item_extras(user, item, 40, 2.0, delta, replace(fac, epochs=3))
    assert with_sgd.epsilon == pytest.approx(1.0) and with_sgd.epsilon_sgd == pytest.approx(1.0)
    legacy = release_item_extras(user, item, 40, 2.0, delta, ModelConfig())
    assert legacy.extras.shape == (40, 1) and legacy.sigma_gram is None
    assert legacy.sigma_pop == pytest.approx(gaussian_sigma(1.0, delta / 2))


def test_every_item_gets_factor_coordinates_from_its_public_content_and_released_rows_stay() -> None:
    # Given: a release over the 20 most popular of 40 items, and public content vectors
    user, item = _log()
    content = np.random.default_rng(5).standard_normal((40, 8))
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    cfg = ModelConfig(epochs=0, factor_rank=4, factor_items=20)
    only_top = release_item_extras(
        user, item, 40, 4.0, 1 / 30, replace(cfg, factor_cover_all=False), content=content
    )
    covered = release_item_extras(user, item, 40, 4.0, 1 / 30, cfg, content=content)
    block = slice(1, 1 + 4)
    # Then: without cover, 20 items have no factor row; with it, every item has one
    assert int((np.abs(only_top.extras[:, block]).sum(axis=1) > 0).sum()) == 20
    assert bool((np.abs(covered.extras[:, block]).sum(axis=1) > 0).all())
    # the released rows are the same release (same noise), and the budget is the same: post-processing
    top = np.abs(only_top.extras[:, block]).sum(axis=1) > 0
    assert (covered.sigma_pop, covered.sigma_gram, covered.epsilon) == (
        only_top.sigma_pop,
        only_top.sigma_gram,
        only_top.epsilon,
    )
    fac = only_top.extras[:, block].astype(np.float64)
    direct = cover_all_items(fac, np.flatnonzero(top), content, cfg.factor_ridge, cfg.factor_cover_scale)
    np.testing.assert_allclose(direct[top], fac[top])
    np.testing.assert_allclose(
        direct[~top],
        cfg.factor_cover_scale
        * (
            content[~top]
            @ np.linalg.solve(
                content[top].T @ content[top] + cfg.factor_ridge * np.eye(8), content[top].T @ fac[top]
            )
        ),
    )


def test_factor_extras_equal_norms_so_cosine_ranks_like_the_dot_product() -> None:
    rng = np.random.default_rng(0)
    content = rng.normal(size=(40, 8))
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    ex = factor_extras(rng.uniform(size=40), rng.normal(size=(40, 3)), 2.0)
    norms = np.linalg.norm(np.concatenate([content, ex], axis=1), axis=1)
    assert np.allclose(norms, norms[0], atol=1e-5)


def test_no_sgd_path_spends_nothing_and_serves_the_factor_block() -> None:
    torch = pytest.importorskip("torch")
    from apps.modeling.ml import inference
    from apps.modeling.ml.train import TrainData, train_model, user_inputs

    torch.set_num_threads(1)
    user, item = _log()
    ts = np.arange(len(user), dtype=np.float64)
    data = from_arrays(user, item, np.full(len(user), 4.0), ts, item_ids=np.arange(40))
    rng = np.random.default_rng(1)
    content = rng.normal(size=(40, 8)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    mc = ModelConfig(epochs=0, hidden=4, freeze_skip=True, factor_rank=3, factor_items=20)
    rel = release_item_extras(data.user, data.item, 40, 4.0, 1 / 30, mc)
    td = TrainData(data, content, rel.extras)
    res = train_model(mc, td, epsilon=rel.epsilon_sgd, delta=rel.delta_sgd)
    assert res.steps == 0 and res.epsilon is None
    res_p = train_model(mc, td, epsilon=1.0, delta=1 / 30)
    assert res_p.epsilon == 0.0 and res_p.steps == 0
    w = res.weights["user.skip.weight"]
    assert np.abs(w[9:12, :8]).sum() > 0  # content mean -> factor coordinates
    xu, _, _ = user_inputs(td)
    scores = (
        inference.user_vectors(res.weights, xu) @ inference.item_vectors(res.weights, content, rel.extras).T
    )
    assert np.isfinite(scores).all()

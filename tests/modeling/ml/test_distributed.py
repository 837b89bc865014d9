"""One tenant's DP-SGD on 2 torch.distributed (gloo) processes with Opacus DPDDP: the same accounting
as one process, and a model that learns as well; tenants too small for N processes are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from apps.modeling.ml import distributed, inference, sparse, tower
from apps.modeling.ml.config import ModelConfig
from apps.modeling.ml.data import from_arrays, p1_split
from apps.modeling.ml.features import FeatureConfig
from apps.modeling.ml.metrics import evaluate_scores
from apps.modeling.ml.synthetic import synthetic_tenant

pytestmark = pytest.mark.slow


def test_two_processes_account_exactly_like_one_and_learn_as_well() -> None:
    st_ = synthetic_tenant(6000, 3000, 240_000, seed=1)
    data = from_arrays(st_.user, st_.item, st_.value, st_.ts, item_ids=st_.item_ids)
    split = p1_split(data)
    cfg = replace(ModelConfig(), epochs=5, hidden=32, freeze_skip=False, expected_batch=1024, negatives=1024)
    x = sparse.tower_inputs(sparse.histories(split.train), st_.content, FeatureConfig())
    seen = sparse.item_lists(split.train)
    runs = {}
    for processes in (1, 2):
        res, extras, pop, release, eps = tower.release_tower(
            split.train, st_.content, cfg, FeatureConfig(), 8.0, 1e-5, 0, processes=processes, threads=1
        )
        uv, iv = (
            inference.user_vectors(res.weights, x),
            inference.item_vectors(res.weights, st_.content, extras),
        )

        def scores(u: np.ndarray, uv: np.ndarray = uv, iv: np.ndarray = iv) -> np.ndarray:
            return np.asarray(uv[u] @ iv.T)

        recall = evaluate_scores(scores, seen, split.test_items, data.n_items)["recall@20_capped"]
        runs[processes] = (res, release, eps, recall)
    popular = evaluate_scores(
        lambda u: np.tile(pop.counts, (len(u), 1)), seen, split.test_items, data.n_items
    )["recall@20_capped"]
    (one, rel1, eps1, r1), (two, rel2, eps2, r2) = runs[1], runs[2]

    # Given the same tenant and ε, when DP-SGD runs on two processes, then σ, q, the steps and the
    # accountant's history (hence ε) are those of one process
    assert two.processes == 2 == rel2["processes"]  # the world size rank 0 trained in, not the request
    assert rel2["engine"] == "torch.distributed (gloo) + Opacus DPDDP"
    assert one.processes == 1 and rel1["engine"] == "one process"
    assert two.noise_multiplier == one.noise_multiplier and two.sample_rate == one.sample_rate
    assert two.steps == one.steps and two.history == one.history
    assert eps2 == pytest.approx(eps1) and eps2 <= 8.0 + 1e-9
    # and the model really trained across the ranks: it beats DP popularity and matches one process
    assert r2 > 1.15 * popular, (r2, popular)
    assert r2 > 0.9 * r1, (r2, r1)
    assert not np.allclose(two.weights["item.proj"], one.weights["item.proj"])  # its own noise and draws


def test_too_many_processes_for_a_small_tenant_are_refused_or_reduced() -> None:
    # 600 users at batch 300: q = 1/2, 150 users per rank and step for 2 ranks, 50 for 6
    assert distributed.usable_processes(600, 300, 6) == 4
    assert distributed.usable_processes(600, 300, 1) == 1
    distributed.check_processes(600, 300, 2)
    with pytest.raises(ValueError, match="expected users per rank and step"):
        distributed.check_processes(600, 300, 6)


def test_the_non_private_tower_does_not_run_distributed() -> None:
    st_ = synthetic_tenant(200, 100, 2000, seed=2)
    data = from_arrays(st_.user, st_.item, st_.value, st_.ts, item_ids=st_.item_ids)
    extras = np.zeros((data.n_items, 1), dtype=np.float32)
    with pytest.raises(ValueError, match="DP-SGD only"):
        tower.train_tower(
            data,
            st_.content,
            extras,
            np.ones(data.n_items),
            ModelConfig(),
            FeatureConfig(),
            noise_multiplier=None,
            processes=2,
        )

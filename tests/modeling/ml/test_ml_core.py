"""Pure tests of the ML core (no Django). Run:

.venv/bin/python -m pytest -p no:django -o addopts="" tests/modeling/ml -q
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch  # noqa: TID253 - the pure ML core is torch; these tests run without Django
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.modeling.ml import inference
from apps.modeling.ml.accounting import gaussian_sigma
from apps.modeling.ml.baselines import train_item_lists
from apps.modeling.ml.data import from_arrays, p1_split
from apps.modeling.ml.features import (
    FeatureConfig,
    new_state,
    state_add_event,
    state_from_history,
    tower_input,
)
from apps.modeling.ml.metrics import capped_recall_at_k, evaluate_scores, ndcg_at_k, recall_at_k, top_k
from apps.modeling.ml.popularity import dp_popularity
from apps.modeling.ml.towers import ModelConfig
from apps.modeling.ml.train import TrainData, TrainRows, build_model, train_model, user_inputs

torch.set_num_threads(1)


# ---------------------------------------------------------------- fixtures
def planted(n_users: int = 60, n_items: int = 30, n_clusters: int = 3, per_user: int = 12, seed: int = 0):
    """Users of cluster k interact only with items of cluster k; content is random."""
    rng = np.random.default_rng(seed)
    items_of = [np.arange(n_items)[np.arange(n_items) % n_clusters == k] for k in range(n_clusters)]
    u, i, r, t = [], [], [], []
    for user in range(n_users):
        k = user % n_clusters
        chosen = rng.choice(items_of[k], size=min(per_user, len(items_of[k])), replace=False)
        for j, it in enumerate(chosen):
            u.append(user)
            i.append(it)
            r.append(float(rng.integers(1, 6)))
            t.append(1e9 + 1000.0 * user + j)
    data = from_arrays(np.array(u), np.array(i), np.array(r), np.array(t), np.arange(n_items))
    content = rng.normal(size=(n_items, 16)).astype(np.float32)
    content /= np.linalg.norm(content, axis=1, keepdims=True)
    return data, content


def evaluate_model(weights, td: TrainData, split, k: int = 5) -> float:
    x, h, _ = user_inputs(td, with_h="user.emb.weight" in weights)
    if h is not None:
        x = np.concatenate(
            [x, np.einsum("bcn,en->bce", h, weights["user.emb.weight"]).reshape(len(x), -1)], 1
        )
    uv = inference.user_vectors(weights, x)
    iv = inference.item_vectors(weights, td.content, td.item_extras)
    tr = train_item_lists(split.train)
    return evaluate_scores(lambda us: uv[us] @ iv.T, tr, split.test_items, td.train.n_items, k_recall=k)[
        f"recall@{k}"
    ]


def random_recall(td: TrainData, split, k: int = 5, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    tr = train_item_lists(split.train)
    return evaluate_scores(
        lambda us: rng.random((len(us), td.train.n_items)), tr, split.test_items, td.train.n_items, k_recall=k
    )[f"recall@{k}"]


FAST = FeatureConfig(half_life_events=(math.inf, 5.0), half_life_seconds=(math.inf, math.inf))


@pytest.fixture(scope="module")
def planted_td():
    data, content = planted()
    split = p1_split(data)
    extras = np.zeros((data.n_items, 1), dtype=np.float32)  # no popularity signal at all
    return TrainData(split.train, content, extras, FAST), split


# ---------------------------------------------------------------- P1 split
def test_p1_split_holds_out_last_ten_percent_by_time():
    # user 0: 25 events (-> 2 test), user 1: 3 events (-> at least 1 test)
    ts0 = np.arange(25.0)[::-1]  # item j rated at time 24 - j: items 0,1 are the latest
    data = from_arrays(
        np.r_[np.zeros(25), np.ones(3)].astype(int),
        np.r_[np.arange(25), [5, 6, 7]],
        np.ones(28),
        np.r_[ts0, [3.0, 1.0, 2.0]],
    )
    s = p1_split(data)
    assert sorted(s.test_items[0].tolist()) == [0, 1]
    assert s.test_items[1].tolist() == [5]
    assert len(s.train) == 28 - 3


# ---------------------------------------------------------------- metrics
def test_metrics_hand_computed():
    ranked = [4, 2, 7, 1]
    test = [2, 1, 9]
    assert recall_at_k(ranked, test, 2) == pytest.approx(1 / 3)
    assert recall_at_k(ranked, test, 4) == pytest.approx(2 / 3)
    assert capped_recall_at_k(ranked, test, 2) == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, test, 10) == pytest.approx(dcg / idcg)
    assert top_k(np.array([[1.0, 3.0, 3.0, 2.0]]), 3, np.array([[False, True, False, False]])).tolist() == [
        [2, 3, 0]
    ]


@given(
    st.lists(st.integers(0, 30), min_size=1, max_size=15, unique=True),
    st.lists(st.integers(0, 30), min_size=1, max_size=10, unique=True),
    st.integers(1, 20),
)
@settings(max_examples=60, deadline=None)
def test_metric_properties(ranked, test, k):
    r = recall_at_k(ranked, test, k)
    n = ndcg_at_k(ranked, test, k)
    assert 0.0 <= r <= 1.0 and 0.0 <= n <= 1.0 + 1e-12
    assert r <= capped_recall_at_k(ranked, test, k) + 1e-12
    assert (r == 0) == (n == 0)
    perfect = list(test) + [x for x in ranked if x not in test]
    assert ndcg_at_k(perfect, test, k) == pytest.approx(1.0)


# ---------------------------------------------------------------- features
@given(
    st.lists(
        st.tuples(st.integers(0, 9), st.sampled_from([0.5, 1.0, 3.0, 4.5, 5.0]), st.floats(0, 1e6)),
        min_size=1,
        max_size=25,
    ),
    st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_incremental_state_equals_batch(events, late):
    cfg = FeatureConfig(half_life_events=(math.inf, 3.0, math.inf), half_life_seconds=(math.inf, 1e5, 3e5))
    rng = np.random.default_rng(0)
    content = rng.normal(size=(10, 4))
    emb = rng.normal(size=(10, 3))
    ts = [e[2] for e in events]
    if not late:
        ts = sorted(ts)
    st_inc = new_state(4, cfg, emb_dim=3)
    for (it, r, _), t in zip(events, ts, strict=True):
        state_add_event(st_inc, it, r, t, content[it], cfg, emb_vec=emb[it])
    items = [e[0] for e in events]
    st_b = state_from_history(
        items, np.array([e[1] for e in events]), np.array(ts), content, cfg, input_emb=emb
    )
    for key in ("content_sum", "weight_sum", "emb_sum"):
        np.testing.assert_allclose(st_inc[key], st_b[key], rtol=1e-9, atol=1e-9)
    assert st_inc["n_events"] == st_b["n_events"] and st_inc["last_items"] == st_b["last_items"]
    np.testing.assert_allclose(tower_input(st_inc, cfg), tower_input(st_b, cfg), rtol=1e-5, atol=1e-6)


def test_state_tower_input_matches_training_features(planted_td):
    td, _ = planted_td
    x, _, _ = user_inputs(td)
    order = np.lexsort((np.arange(len(td.train)), td.train.ts, td.train.user))
    u = 4
    rows = order[td.train.user[order] == u]
    s = state_from_history(
        td.train.item[rows], td.train.rating[rows], td.train.ts[rows], td.content, td.features
    )
    np.testing.assert_allclose(tower_input(s, td.features), x[u], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- inference parity
@pytest.mark.parametrize(
    "cfg", [ModelConfig(hidden=8, emb_dim=4, learn_items=True, item_id_emb=True), ModelConfig(hidden=0)]
)
def test_numpy_inference_equals_torch(planted_td, cfg):
    td, _ = planted_td
    torch.manual_seed(0)
    model = build_model(td, cfg)
    with torch.no_grad():  # move off the initialisation so every weight matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = TrainRows(td, (0.2, 0.3), cfg.emb_dim > 0, seed=0)
    x, h, m = rows.x, rows.h, rows.mask
    with torch.no_grad():
        logits = model(x, h, m).numpy()
    from apps.modeling.ml.train import export_weights

    w = export_weights(model)
    z = x.numpy()
    if cfg.emb_dim:
        z = np.concatenate(
            [z, np.einsum("bcn,en->bce", h.numpy(), w["user.emb.weight"]).reshape(len(z), -1)], 1
        )
    s = inference.score(inference.user_vectors(w, z), inference.item_vectors(w, td.content, td.item_extras))
    s = s / cfg.tau
    s[m.numpy()] = -1e4
    np.testing.assert_allclose(s, logits, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- DP plumbing
def test_dp_rows_are_users_and_sampler_is_poisson(planted_td):
    from opacus import PrivacyEngine
    from opacus.data_loader import DPDataLoader
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler
    from torch.utils.data import DataLoader

    from apps.modeling.ml.towers import SoftmaxTargetLoss

    td, _ = planted_td
    rows = TrainRows(td, (0.1, 0.3), False, seed=0)
    assert len(rows) == td.train.n_users
    model = build_model(td, ModelConfig(hidden=4))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    _, _, _, loader = PrivacyEngine().make_private(
        module=model,
        optimizer=opt,
        data_loader=DataLoader(rows, batch_size=30),
        criterion=SoftmaxTargetLoss(),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        poisson_sampling=True,
        grad_sample_mode="ghost",
    )
    assert isinstance(loader, DPDataLoader)
    assert isinstance(loader.batch_sampler, UniformWithReplacementSampler)
    assert loader.sample_rate == pytest.approx(0.5)
    assert len(loader.dataset) == td.train.n_users


def test_reported_epsilon_equals_accountant(planted_td, monkeypatch):
    import opacus

    td, _ = planted_td
    seen = {}
    orig = opacus.PrivacyEngine.make_private

    def spy(self, **kw):
        seen["engine"] = self
        return orig(self, **kw)

    monkeypatch.setattr(opacus.PrivacyEngine, "make_private", spy)
    cfg = ModelConfig(hidden=4, epochs=2, sample_rate=0.5)
    res = train_model(cfg, td, seed=1, epsilon=4.0, delta=1e-3)
    assert res.epsilon == pytest.approx(seen["engine"].accountant.get_epsilon(1e-3))
    assert res.epsilon is not None and res.epsilon <= 4.0 + 0.05
    assert res.steps == 4 and res.n_users == td.train.n_users and res.accountant == "rdp"
    assert res.epsilon_other is not None and res.epsilon_other > 0
    assert len(res.loss_history) == 2 and res.noise_multiplier > 0


def test_training_is_seeded(planted_td):
    td, _ = planted_td
    cfg = ModelConfig(hidden=4, epochs=2, sample_rate=0.5)
    a = train_model(cfg, td, seed=3, epsilon=8.0)
    b = train_model(cfg, td, seed=3, epsilon=8.0)
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k])


# ---------------------------------------------------------------- learning planted structure
def test_training_beats_random_nonprivate_and_dp(planted_td):
    td, split = planted_td
    base = random_recall(td, split)
    progress = []
    cfg = ModelConfig(hidden=16, epochs=30, batch_size=16, lr=1e-2, tau=0.1, init_content_weights=(0.0, 0.0))
    np_res = train_model(cfg, td, seed=0, on_progress=lambda e, n, loss: progress.append((e, n, loss)))
    assert progress[-1][:2] == (30, 30) and len(progress) == 30
    rec_np = evaluate_model(np_res.weights, td, split)
    dp_cfg = ModelConfig(
        hidden=16,
        epochs=30,
        sample_rate=0.5,
        lr=1e-2,
        tau=0.1,
        max_grad_norm=1.0,
        init_content_weights=(0.0, 0.0),
    )
    dp_res = train_model(dp_cfg, td, seed=0, epsilon=50.0, delta=1e-3)
    rec_dp = evaluate_model(dp_res.weights, td, split)
    # 10 items per cluster, 8-9 seen in training: a perfect model hits ~1.0 at k=5
    assert rec_np > base + 0.4, (rec_np, base)
    assert rec_dp > base + 0.3, (rec_dp, base)


# ---------------------------------------------------------------- DP popularity
def test_dp_popularity_sensitivity_and_sigma():
    sigma = gaussian_sigma(1.0, 1e-5)
    assert 3.5 < sigma < 4.0
    user = np.repeat(np.arange(3), 100)
    item = np.tile(np.arange(100), 3)
    exact = dp_popularity(user, item, 100, math.inf, 0.0, cap=10, seed=0)
    # each user keeps 10 items with weight 1/sqrt(10): L2 contribution exactly 1
    assert exact.counts.sum() == pytest.approx(3 * 10 / math.sqrt(10))
    noisy = dp_popularity(user, item, 100, 1.0, 1e-5, cap=10, seed=0)
    assert noisy.epsilon == 1.0 and noisy.sigma == pytest.approx(sigma)

"""The batch fold equals the shared one-event-at-a-time fold (``state_add_event``), user by user.

Property-tested with seeded generators: any number of users, fresh or stored states, ties and late
events (timestamps before the stored anchor), finite and infinite half-lives.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.modeling.ml.features import FeatureConfig, State, new_state, state_add_event
from apps.profiles.folding import states_fold_events
from apps.profiles.state_codec import decode_state, encode_state

CONFIGS = [
    FeatureConfig(),
    FeatureConfig(
        half_life_events=(math.inf, 3.0, 1.0), half_life_seconds=(math.inf, 60.0, 5.0), rating_beta=0.5
    ),
]


def sequential(
    state: State | None, events: list[tuple[int, float, float, np.ndarray]], cfg: FeatureConfig
) -> State:
    """The reference: ``state_add_event`` per event, in the order given."""
    dim = events[0][3].shape[0]
    ref = (
        new_state(dim, cfg) if state is None or state["n_events"] == 0 else decode_state(encode_state(state))
    )
    ref["emb_sum"] = None
    for item, rating, ts, vec in events:
        state_add_event(ref, item, rating, ts, vec, cfg)
    return ref


def assert_same(got: State, want: State) -> None:
    assert got["n_events"] == want["n_events"]
    assert got["last_items"] == want["last_items"]
    assert got["anchor_time"] == want["anchor_time"]
    assert got["rating_sum"] == pytest.approx(want["rating_sum"], rel=1e-12, abs=1e-12)
    assert np.allclose(got["content_sum"], want["content_sum"], rtol=1e-9, atol=1e-12)
    assert np.allclose(got["weight_sum"], want["weight_sum"], rtol=1e-9, atol=1e-12)
    assert got["emb_sum"] is None


@settings(max_examples=80, deadline=None)
@given(
    config=st.sampled_from(CONFIGS),
    n_users=st.integers(1, 5),
    prior=st.lists(st.integers(0, 6), min_size=5, max_size=5),
    new=st.lists(st.integers(1, 8), min_size=5, max_size=5),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_batch_fold_equals_folding_event_by_event(config, n_users, prior, new, seed):
    rng = np.random.default_rng(seed)
    dim = 6
    stored: list[State | None] = []
    for u in range(n_users):
        if prior[u] == 0:
            stored.append(None if u % 2 else new_state(dim, config))
            continue
        history = [
            (
                int(rng.integers(100)),
                float(rng.uniform(0, 5)),
                1e9 + float(rng.integers(0, 500)),
                rng.standard_normal(dim),
            )
            for _ in range(prior[u])
        ]
        history.sort(key=lambda e: e[2])
        stored.append(sequential(None, history, config))
    users, order, items, ratings, ts, vectors = [], [], [], [], [], []
    expected = []
    for u in range(n_users):
        # timestamps on a coarse grid: ties, and some before the stored anchor (late events)
        events = [
            (
                int(rng.integers(100)),
                float(rng.uniform(0, 5)),
                1e9 + float(rng.integers(0, 40)) * 20,
                rng.standard_normal(dim).astype(np.float32),
            )
            for _ in range(new[u])
        ]
        seqs = rng.permutation(len(events))
        for (item, rating, t, vec), seq in zip(events, seqs, strict=True):
            users.append(u)
            order.append(int(seq))
            items.append(item)
            ratings.append(rating)
            ts.append(t)
            vectors.append(vec)
        in_order = [e for _, e in sorted(zip(seqs, events, strict=True), key=lambda p: (p[1][2], p[0]))]
        expected.append(sequential(stored[u], in_order, config))
    # shuffle the batch: the fold must sort it itself
    perm = rng.permutation(len(users))
    got = states_fold_events(
        stored,
        np.array(users)[perm],
        np.array(order)[perm],
        np.array(items)[perm],
        np.array(ratings)[perm],
        np.array(ts)[perm],
        np.stack(vectors)[perm],
        config,
    )
    for g, want in zip(got, expected, strict=True):
        assert g is not None
        assert_same(g, want)


def test_the_stored_states_are_not_changed():
    cfg = FeatureConfig()
    state = sequential(None, [(1, 4.0, 1e9, np.ones(3))], cfg)
    before = encode_state(state)
    states_fold_events(
        [state],
        np.array([0]),
        np.array([0]),
        np.array([2]),
        np.array([3.0]),
        np.array([1e9 + 5]),
        np.ones((1, 3)),
        cfg,
    )
    assert encode_state(state) == before


def test_a_state_of_another_dimension_asks_for_a_rebuild():
    cfg = FeatureConfig()
    old = sequential(None, [(1, 4.0, 1e9, np.ones(3))], cfg)
    got = states_fold_events(
        [old, None],
        np.array([0, 1]),
        np.array([0, 1]),
        np.array([2, 3]),
        np.array([3.0, 3.0]),
        np.array([1e9 + 5, 1e9 + 5]),
        np.ones((2, 4)),
        cfg,
    )
    assert got[0] is None
    assert got[1] is not None and got[1]["content_sum"].shape == (cfg.n_channels, 4)


def test_every_state_needs_an_event():
    with pytest.raises(ValueError, match="at least one event"):
        states_fold_events(
            [None, None],
            np.array([0]),
            np.array([0]),
            np.array([1]),
            np.array([3.0]),
            np.array([1e9]),
            np.ones((1, 3)),
            FeatureConfig(),
        )


def test_the_docstring_example_runs():
    import doctest

    from apps.profiles import folding

    failures, tried = doctest.testmod(folding)
    assert tried > 0 and failures == 0

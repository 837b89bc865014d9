"""The binary state form round-trips exactly and refuses what it cannot read."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.modeling.ml.features import FeatureConfig, new_state, state_add_event
from apps.profiles.state_codec import StateCorrupt, decode_state, encode_state

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(
    dim=st.integers(1, 16),
    emb_dim=st.one_of(st.none(), st.integers(1, 4)),
    events=st.lists(st.tuples(st.integers(0, 10**12), st.floats(0, 5), st.floats(1e8, 2e9)), max_size=30),
    seed=st.integers(0, 2**32 - 1),
)
def test_encode_decode_is_exact(dim, emb_dim, events, seed):
    cfg = FeatureConfig()
    rng = np.random.default_rng(seed)
    state = new_state(dim, cfg, emb_dim)
    for item, rating, ts in events:
        emb = None if emb_dim is None else rng.standard_normal(emb_dim)
        state_add_event(state, item, rating, ts, rng.standard_normal(dim), cfg, emb)
    back = decode_state(encode_state(state))
    assert back["anchor_time"] == state["anchor_time"]
    assert back["n_events"] == state["n_events"]
    assert back["rating_sum"] == state["rating_sum"]
    assert back["last_items"] == state["last_items"]
    assert np.array_equal(back["content_sum"], state["content_sum"])
    assert np.array_equal(back["weight_sum"], state["weight_sum"])
    if emb_dim is None:
        assert back["emb_sum"] is None
    else:
        assert np.array_equal(back["emb_sum"], state["emb_sum"])
    back["content_sum"] += 1.0  # decoded arrays are writable copies (folding mutates them in place)


@given(anchor=finite, rating_sum=finite)
def test_scalars_survive_any_finite_value(anchor, rating_sum):
    state = new_state(2, FeatureConfig())
    state["anchor_time"], state["rating_sum"] = anchor, rating_sum
    back = decode_state(encode_state(state))
    assert back["anchor_time"] == anchor
    assert back["rating_sum"] == rating_sum


@pytest.mark.parametrize(
    "mutilate", [lambda b: b[:10], lambda b: b"XXXX" + b[4:], lambda b: b + b"\0" * 8, lambda b: b[:-8]]
)
def test_it_refuses_corrupt_bytes(mutilate):
    blob = encode_state(new_state(3, FeatureConfig()))
    with pytest.raises(StateCorrupt):
        decode_state(mutilate(blob))

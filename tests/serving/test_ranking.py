"""The pure ranking pieces: the search blend's equivalence, MMR's behaviour, the content-space user vector."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.serving import ranking


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim))
    unit: np.ndarray = v / np.linalg.norm(v, axis=1, keepdims=True)
    return unit


def test_the_docstring_examples_run():
    import apps.serving.query_encoding as query_encoding
    import apps.serving.selectors as selectors

    for module in (ranking, query_encoding, selectors):
        failures, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert tried > 0 and failures == 0, module.__name__


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), alpha=st.floats(0.0, 1.0))
def test_one_scan_on_the_blend_vector_ranks_exactly_like_the_blended_score(seed, alpha):
    rng = np.random.default_rng(seed)
    items = _unit(rng, 200, 16)
    q, u = _unit(rng, 2, 16)
    w, scale = ranking.blend_vector(q, u, alpha)
    blended = (1 - alpha) * items @ q + alpha * items @ u
    via_w = scale * (items @ w) / np.linalg.norm(w)
    assert np.allclose(blended, via_w, atol=1e-5)  # same score for every item, hence the same ranking


def test_without_a_user_the_blend_is_the_query_itself():
    q = np.array([0.6, 0.8], dtype=np.float32)
    w, scale = ranking.blend_vector(q, None, 0.3)
    assert np.array_equal(w, q) and scale == 1.0
    w, scale = ranking.blend_vector(q, -q, 0.5)  # opposite user: no direction left, query alone
    assert np.array_equal(w, q) and scale == 1.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 30), diversity=st.floats(0.0, 1.0))
def test_mmr_returns_k_distinct_candidates_starting_with_the_most_relevant(seed, k, diversity):
    rng = np.random.default_rng(seed)
    vectors = _unit(rng, 25, 8)
    relevance = rng.uniform(-1, 1, 25)
    order = ranking.mmr_order(relevance, vectors, k, diversity)
    assert len(order) == min(k, 25) == len(set(order))
    assert order[0] == int(np.argmax(relevance))


def test_mmr_with_no_diversity_is_the_relevance_order():
    relevance = [0.2, 0.9, 0.5, 0.9]
    assert ranking.mmr_order(relevance, np.eye(4), 4, 0.0) == [1, 3, 2, 0]


def test_mmr_skips_near_duplicates_when_asked_for_diversity():
    # two clusters: three near-copies of A (most relevant) and one B
    a = np.array([1.0, 0.0])
    b = np.array([0.0, 1.0])
    vectors = np.stack([a, a * 0.999 + b * 0.045, a * 0.998 + b * 0.063, b])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    relevance = [0.95, 0.94, 0.93, 0.6]
    assert ranking.mmr_order(relevance, vectors, 2, 0.0) == [0, 1]
    assert ranking.mmr_order(relevance, vectors, 2, 0.5) == [0, 3]


def test_content_interest_is_the_normalised_channel_zero_mean():
    state = {
        "n_events": 3,
        "content_sum": np.array([[3.0, 4.0], [9.0, 9.0]]),
        "weight_sum": np.array([5.0, 1.0]),
    }
    interest = ranking.content_interest(state)
    assert interest is not None and interest.tolist() == pytest.approx([0.6, 0.8])
    assert ranking.content_interest({**state, "n_events": 0}) is None
    assert ranking.content_interest({**state, "content_sum": np.zeros((2, 2))}) is None
    assert ranking.content_interest({**state, "weight_sum": np.array([0.0, 1.0])}) is None

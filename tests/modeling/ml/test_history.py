"""The recency-history user side (ml.history): the newest items steer the user vector."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from apps.modeling.ml import history
from apps.modeling.ml.history import ease_operator, fit_history_operator, history_vectors, recency_weights


def _pairs_log(n_users: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Users who took item 0 also took 1; users who took 2 also took 3 (two planted pairs)."""
    user, item = [], []
    for u in range(n_users):
        pair = (0, 1) if u % 2 == 0 else (2, 3)
        user += [u, u]
        item += list(pair)
    return np.array(user), np.array(item)


def test_ease_operator_matches_the_dense_solution_at_full_rank() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((50, 8)) < 0.3).astype(float)
    g = x.T @ x
    p = np.linalg.inv(g + 2.0 * np.eye(8))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    left, right = ease_operator(g, 2.0, 8)
    np.testing.assert_allclose(left @ right.T, b, atol=1e-10)
    low_left, low_right = ease_operator(g, 2.0, 3)
    assert low_left.shape == (8, 3) and low_right.shape == (8, 3)


def test_the_newest_item_decides_what_is_recommended() -> None:
    user, item = _pairs_log()
    op = fit_history_operator(user, item, 5, np.arange(4), lam=1.0, rank=4, half_life=1.0, last_n=20)
    # same two items, opposite order: the newest one's partner must rank first
    q = history_vectors(op, [[0, 2], [2, 0]])
    scores = q @ op.outputs.T
    assert int(np.argmax(scores[0, [1, 3]])) == 1  # newest 2 -> its partner 3
    assert int(np.argmax(scores[1, [1, 3]])) == 0  # newest 0 -> its partner 1
    assert np.allclose(np.linalg.norm(q, axis=1), 1.0)
    assert np.all(op.outputs[4] == 0) and np.all(op.inputs[4] == 0)  # outside the covered items


def test_only_the_last_n_items_count_and_an_empty_history_is_zero() -> None:
    user, item = _pairs_log()
    op = fit_history_operator(user, item, 5, np.arange(4), lam=1.0, rank=4, half_life=1.0, last_n=1)
    q = history_vectors(op, [[2, 2, 2, 0], [0], [], [4]])
    np.testing.assert_allclose(q[0], q[1])  # only the newest item (0) is read
    assert not q[2].any() and not q[3].any()  # nothing, or nothing covered


@pytest.mark.parametrize(("n", "half_life"), [(1, 5.0), (4, 2.0), (20, 5.0)])
def test_recency_weights_halve_per_half_life(n: int, half_life: float) -> None:
    w = recency_weights(n, half_life)
    assert w[-1] == 1.0 and len(w) == n
    if n > 1:
        assert w[-1 - int(half_life)] == pytest.approx(0.5)


def test_docstring_examples() -> None:
    failures, tried = doctest.testmod(history)
    assert tried >= 2 and failures == 0

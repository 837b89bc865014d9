"""The user's own recent history over an item-item operator: the collaborative user side.

Why: the next interaction follows the latest ones. Round 4 and 5 of docs/results/p1-experiments.md
measured that a user row weighted by recency (half-life of a few events) over an item-item model
is the largest signal the P1 data holds: EASE on a recency-weighted row scores 0.168 capped R@20
against 0.139 with a binary row. The user side reads only the user's own last items (the real-time
state's ``last_items``, newest last), so it costs no privacy of other users; the item side is an
operator derived from the item-item Gram of :mod:`.dp_factors` (``user_gram``: one binary,
L2-normalised row per user).

The operator is EASE (Steck 2019) on that Gram, ``B = I - P / diag(P)`` with
``P = (G + λI)^-1`` and a zero diagonal, factorised to rank ``r`` (``B ≈ L Rᵀ`` by SVD) so that it
is served as vectors: the user vector is ``q = normalise(Σ_j w_j L_j)`` over the last items ``j``
with ``w_j = 2^-(age_j / half_life)`` (age in events, newest = 0), and item ``i`` scores ``q · R_i``,
one more block of the concatenated query and item vectors.

Status: measured in P1's non-private reference row (``evaluate.run_p1``). Under DP at 610 users
the same operator on the noisy Gram lost to the factors design's PureSVD shape (round 5), so no
private release uses it yet and the served model does not carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .dp_factors import user_gram

__all__ = ["HistoryOperator", "ease_operator", "fit_history_operator", "history_vectors", "recency_weights"]


@dataclass(frozen=True)
class HistoryOperator:
    """Rank-``r`` item-item operator ``B ≈ inputs · outputsᵀ`` (rows outside ``items`` are zero)."""

    inputs: np.ndarray  # (n_items, r): what item j adds to the user's history vector (L)
    outputs: np.ndarray  # (n_items, r): item i's block in the served item vector (R)
    items: np.ndarray  # (M,) the items the Gram covers
    half_life: float  # in events: the weight of an item halves with every newer one
    last_n: int  # how many of the newest items are read (the state's ``last_items``)


def ease_operator(gram: np.ndarray, lam: float, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """``(L, R)`` with ``L Rᵀ`` the best rank-``rank`` approximation of EASE's ``B`` on ``gram``.

    >>> g = np.array([[2.0, 2.0, 0.0], [2.0, 2.0, 0.0], [0.0, 0.0, 1.0]])
    >>> left, right = ease_operator(g, 1.0, 3)
    >>> np.round(left @ right.T, 3).tolist()
    [[0.0, 0.667, 0.0], [0.667, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    m = gram.shape[0]
    p = np.linalg.inv(np.asarray(gram, dtype=np.float64) + lam * np.eye(m))
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    u, s, vt = np.linalg.svd(b)
    r = max(0, min(rank, m))
    return u[:, :r] * s[:r], vt[:r].T


def fit_history_operator(
    user: np.ndarray,
    item: np.ndarray,
    n_items: int,
    items: np.ndarray,
    *,
    lam: float,
    rank: int,
    half_life: float,
    last_n: int,
) -> HistoryOperator:
    """The exact (noise-free) operator over ``items`` from the interaction log (sparse input, M×M Gram)."""
    items = np.asarray(items, dtype=np.int64)
    pos = np.full(n_items, -1, dtype=np.int64)
    pos[items] = np.arange(len(items))
    left, right = ease_operator(user_gram(user, item, pos, len(items)), lam, rank)
    inputs = np.zeros((n_items, left.shape[1]), dtype=np.float32)
    outputs = np.zeros((n_items, right.shape[1]), dtype=np.float32)
    inputs[items], outputs[items] = left, right
    return HistoryOperator(inputs, outputs, items, float(half_life), int(last_n))


def recency_weights(n: int, half_life: float) -> np.ndarray:
    """Weights of ``n`` items ordered oldest to newest: the newest weighs 1, each older one halves per ``half_life``.

    >>> recency_weights(3, 1.0).tolist()
    [0.25, 0.5, 1.0]
    """
    return np.asarray(2.0 ** (-(n - 1 - np.arange(n)) / half_life), dtype=np.float64)


def history_vectors(op: HistoryOperator, last_items: Sequence[np.ndarray | Sequence[int]]) -> np.ndarray:
    """Unit user vectors (one row per user) from each user's items, newest last; zero without covered items."""
    out = np.zeros((len(last_items), op.inputs.shape[1]), dtype=np.float64)
    for row, items in enumerate(last_items):
        recent = np.asarray(items, dtype=np.int64)[-op.last_n :]
        if len(recent) == 0:
            continue
        q = recency_weights(len(recent), op.half_life) @ op.inputs[recent].astype(np.float64)
        norm = float(np.linalg.norm(q))
        if norm > 0:
            out[row] = q / norm
    return out

"""Non-private reference recommenders for P1 (pure numpy).

These exist to validate the protocol (known reference numbers) and to give the
learned models a yardstick. None of them is differentially private.
"""

from __future__ import annotations

import numpy as np

from .data import Interactions

__all__ = [
    "content_mean_user_vectors",
    "ease_weights",
    "interaction_matrix",
    "itemknn_scores",
    "popularity_scores",
    "train_item_lists",
]


def interaction_matrix(train: Interactions, dtype: type = np.float32) -> np.ndarray:
    """Dense binary user x item matrix of the training interactions."""
    x: np.ndarray = np.zeros((train.n_users, train.n_items), dtype=dtype)
    x[train.user, train.item] = 1
    return x


def train_item_lists(train: Interactions) -> list[np.ndarray]:
    """Unique training item indices per user."""
    order = np.argsort(train.user, kind="stable")
    bounds = np.searchsorted(train.user[order], np.arange(train.n_users + 1))
    return [np.unique(train.item[order[bounds[u] : bounds[u + 1]]]) for u in range(train.n_users)]


def popularity_scores(train: Interactions) -> np.ndarray:
    """Number of distinct users per item (one score vector for everybody).

    >>> from .data import from_arrays
    >>> popularity_scores(from_arrays([1, 2, 2], [5, 5, 6], [1, 1, 1], [0, 1, 2])).tolist()
    [2.0, 1.0]
    """
    out: np.ndarray = interaction_matrix(train, np.float64).sum(axis=0)
    return out


def itemknn_scores(x: np.ndarray, k: int | None = None) -> np.ndarray:
    """Item-based kNN with cosine item-item similarity on the binary matrix.

    Returns the item-item similarity matrix ``S`` (diagonal zeroed, optionally
    only the ``k`` largest per column kept); user scores are ``x @ S``.
    """
    x = x.astype(np.float32)
    co = x.T @ x
    norms = np.sqrt(np.diag(co)).astype(np.float32)
    norms[norms == 0] = 1.0
    sim = co / norms[:, None] / norms[None, :]
    np.fill_diagonal(sim, 0.0)
    if k is not None and k < sim.shape[0]:
        thresh = -np.partition(-sim, k - 1, axis=0)[k - 1 : k, :]
        sim = np.where(sim >= thresh, sim, 0.0).astype(np.float32)
    out: np.ndarray = sim
    return out


def ease_weights(x: np.ndarray, lam: float = 500.0) -> np.ndarray:
    """EASE^R closed form (Steck 2019): B = I - P / diag(P), P = (XᵀX + λI)⁻¹.

    User scores are ``x @ B``.
    """
    g = (x.T @ x).astype(np.float64)
    g[np.diag_indices_from(g)] += lam
    p = np.linalg.inv(g)
    b = -p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    out: np.ndarray = b.astype(np.float32)
    return out


def content_mean_user_vectors(x: np.ndarray, content: np.ndarray) -> np.ndarray:
    """ "Seed-literal" user vector: mean of the history items' content vectors."""
    counts = x.sum(axis=1, keepdims=True)
    counts[counts == 0] = 1.0
    out: np.ndarray = (x @ content) / counts
    return out

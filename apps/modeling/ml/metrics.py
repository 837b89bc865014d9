"""Ranking metrics for protocol P1 (pure numpy).

Definitions (the standard ones, fixed by the P1 protocol):

* Recall@k = |top-k ∩ test| / |test|   (the standard definition, reported as
  ``recall@k``)
* Capped recall = |top-k ∩ test| / min(|test|, k), reported as
  ``recall@k_capped``. The P1 reference numbers (popularity 0.0744, ItemKNN
  0.1027, EASE 0.1390) reproduce with this denominator only; the NDCG
  references reproduce exactly with the definition below, so both are reported.
* NDCG@k   = DCG@k / IDCG@k with binary gains, DCG = Σ 1/log2(rank+1) over
  hits at 1-based ranks <= k, and IDCG over min(|test|, k) hits.

Both are averaged over users that have at least one test item. Ties in scores
are broken by the lower item index (stable sort), so results are deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["capped_recall_at_k", "evaluate_scores", "ndcg_at_k", "recall_at_k", "top_k"]


def recall_at_k(ranked: Sequence[int], test: Sequence[int], k: int) -> float:
    """Fraction of test items in the first ``k`` ranked items.

    >>> recall_at_k([5, 3, 9], [3, 4], k=2)
    0.5
    """
    test_set = {int(t) for t in test}
    if not test_set:
        raise ValueError("recall undefined for an empty test set")
    hits = sum(1 for i in list(ranked)[:k] if int(i) in test_set)
    return hits / len(test_set)


def capped_recall_at_k(ranked: Sequence[int], test: Sequence[int], k: int) -> float:
    """Hits in the first ``k`` divided by ``min(|test|, k)`` (Liang et al. 2018).

    >>> capped_recall_at_k([5, 3], [3, 4, 6], k=2)
    0.5
    """
    test_set = {int(t) for t in test}
    if not test_set:
        raise ValueError("recall undefined for an empty test set")
    hits = sum(1 for i in list(ranked)[:k] if int(i) in test_set)
    return hits / min(len(test_set), k)


def ndcg_at_k(ranked: Sequence[int], test: Sequence[int], k: int) -> float:
    """Binary-gain NDCG at ``k``.

    >>> round(ndcg_at_k([5, 3, 9], [3, 4], k=2), 6)  # (1/log2 3) / (1 + 1/log2 3)
    0.386853
    >>> ndcg_at_k([3, 4], [3, 4], k=10)
    1.0
    """
    test_set = {int(t) for t in test}
    if not test_set:
        raise ValueError("ndcg undefined for an empty test set")
    dcg = sum(1.0 / np.log2(r + 2) for r, i in enumerate(list(ranked)[:k]) if int(i) in test_set)
    idcg = sum(1.0 / np.log2(r + 2) for r in range(min(len(test_set), k)))
    return float(dcg / idcg)


def top_k(scores: np.ndarray, k: int, exclude: np.ndarray | None = None) -> np.ndarray:
    """Indices of the ``k`` best scores of each row (ties -> lower index first).

    ``exclude`` is a boolean mask (same shape) of items that must not be ranked.

    >>> top_k(np.array([[0.1, 0.9, 0.9, 0.5]]), 2).tolist()
    [[1, 2]]
    """
    s = np.array(scores, dtype=np.float64, copy=True)
    if s.ndim == 1:
        s = s[None, :]
    if exclude is not None:
        s[np.asarray(exclude, dtype=bool).reshape(s.shape)] = -np.inf
    k = min(k, s.shape[1])
    # stable sort on the negated scores keeps lower indices first among ties
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def evaluate_scores(
    score_fn: Callable[[np.ndarray], np.ndarray],
    train_items: list[np.ndarray],
    test_items: list[np.ndarray],
    n_items: int,
    k_recall: int = 20,
    k_ndcg: int = 10,
    batch_size: int = 256,
) -> dict[str, float]:
    """Average Recall@k and NDCG@k over users with test items.

    ``score_fn(user_indices) -> (len(users), n_items)`` scores; items seen in
    training are excluded from the ranking (P1: "rank all items not seen in
    training").
    """
    users = np.array([u for u, t in enumerate(test_items) if len(t) > 0], dtype=np.int64)
    k = max(k_recall, k_ndcg)
    recalls: list[float] = []
    capped: list[float] = []
    ndcgs: list[float] = []
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch), dtype=np.float64)
        excl = np.zeros((len(batch), n_items), dtype=bool)
        for r, u in enumerate(batch):
            excl[r, train_items[u]] = True
        ranked = top_k(scores, k, excl)
        for r, u in enumerate(batch):
            recalls.append(recall_at_k(ranked[r], test_items[u], k_recall))
            capped.append(capped_recall_at_k(ranked[r], test_items[u], k_recall))
            ndcgs.append(ndcg_at_k(ranked[r], test_items[u], k_ndcg))
    return {
        f"recall@{k_recall}": float(np.mean(recalls)) if recalls else 0.0,
        f"recall@{k_recall}_capped": float(np.mean(capped)) if capped else 0.0,
        f"ndcg@{k_ndcg}": float(np.mean(ndcgs)) if ndcgs else 0.0,
        "n_users": float(len(recalls)),
    }

"""Pure numpy ranking pieces of the serving path: the content-space user vector, the search blend, MMR.

No Django here, so each piece is testable alone and costs nothing to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["blend_vector", "content_interest", "mmr_order"]


def content_interest(state: dict[str, Any] | None) -> np.ndarray | None:
    """The user's rating-weighted mean of history content vectors, L2-normalised (float32).

    Read from channel 0 of the real-time state (no decay: every event counts, weighted by
    ``rating_weight``); ``None`` for a cold user or a degenerate (zero) mean. This is the
    ``content`` strategy's user vector and the user side of personalised search: it lives in the
    same space as content and query vectors, whatever model is active.

    >>> s = {"content_sum": np.array([[2.0, 0.0], [0.0, 1.0]]), "weight_sum": np.array([2.0, 1.0]), "n_events": 2}
    >>> content_interest(s).tolist()
    [1.0, 0.0]
    >>> content_interest(None) is None
    True
    """
    if state is None or int(state.get("n_events", 0)) <= 0:
        return None
    weight = float(np.asarray(state["weight_sum"], dtype=np.float64)[0])
    if not weight > 0.0:
        return None
    mean = np.asarray(state["content_sum"], dtype=np.float64)[0] / weight
    norm = float(np.linalg.norm(mean))
    if not np.isfinite(norm) or norm < 1e-9:
        return None
    unit: np.ndarray = (mean / norm).astype(np.float32)
    return unit


def blend_vector(query: np.ndarray, user: np.ndarray | None, user_weight: float) -> tuple[np.ndarray, float]:
    """The vector whose cosine ranking equals the personalised search blend, and its norm.

    For unit item vectors x and unit q, u: ``(1-a)·cos(q,x) + a·cos(u,x) = x·w`` with
    ``w = (1-a)·q + a·u``, so ``score = |w|·cos(w, x)``: one HNSW query on ``w`` ranks the whole
    catalogue by the blend exactly as re-ranking every item would (no candidate pool to size).
    Returns ``(w, |w|)``; with no user (or weight 0) that is ``(q, 1)``.

    >>> w, n = blend_vector(np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.3)
    >>> [round(float(x), 2) for x in w], round(n, 4)
    ([0.7, 0.3], 0.7616)
    """
    q = np.asarray(query, dtype=np.float32)
    if user is None or user_weight <= 0.0:
        return q, 1.0
    w = (1.0 - user_weight) * q.astype(np.float64) + user_weight * np.asarray(user, dtype=np.float64)
    norm = float(np.linalg.norm(w))
    if norm < 1e-9:  # the user points exactly away from the query: fall back to the query
        return q, 1.0
    return w.astype(np.float32), norm


def mmr_order(
    relevance: Sequence[float] | np.ndarray, vectors: np.ndarray, k: int, diversity: float
) -> list[int]:
    """Maximal marginal relevance: indices of ``k`` candidates, picked greedily.

    Each pick maximises ``(1-d)·relevance[i] - d·max_j cos(vectors[i], vectors[j])`` over the
    items j picked so far (Carbonell & Goldstein 1998), ``d = diversity`` in [0, 1]. The first
    pick is always the most relevant; ties go to the earlier (more relevant) candidate. Rows of
    ``vectors`` must be L2-normalised. O(k·n) with one matrix-vector product per pick.

    >>> v = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> mmr_order([0.9, 0.8, 0.5], v, 2, 0.0), mmr_order([0.9, 0.8, 0.5], v, 2, 0.7)
    ([0, 1], [0, 2])
    """
    rel = np.asarray(relevance, dtype=np.float64)
    n = len(rel)
    k = min(int(k), n)
    if k <= 0:
        return []
    if diversity <= 0.0:
        return [int(i) for i in np.argsort(-rel, kind="stable")[:k]]
    vecs = np.asarray(vectors, dtype=np.float64)
    picked: list[int] = []
    max_sim = np.full(n, -np.inf)
    available = np.ones(n, dtype=bool)
    for _ in range(k):
        gain = (1.0 - diversity) * rel - diversity * max_sim if picked else rel.copy()
        gain[~available] = -np.inf
        best = int(np.argmax(gain))  # argmax returns the first maximum: the stable tie-break
        picked.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, vecs @ vecs[best])
    return picked

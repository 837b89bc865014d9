"""Folding many users' new events into their stored states at once (the ingest's hot loop).

The result equals calling :func:`apps.modeling.ml.features.state_add_event` once per event in
timestamp order, user by user (up to float rounding: a product of per-event decay factors becomes
one power of two); ``tests/profiles/test_folding.py`` holds it to that, property-tested. It is the
closed form of :func:`~apps.modeling.ml.features.history_weights` with a starting anchor, computed
for every event of the batch in a few array operations instead of ``k`` passes over each user's
``(C, D)`` sums: per channel ``c`` an event ``j`` of user ``u`` weighs

    w_cj = rating_weight(r_j) · 2^(-(#events of u after j) / half_life_events[c]
                                   - (A_u - max(a_u, t_j)) / half_life_seconds[c])

where ``a_u`` is the stored anchor (none for a fresh state) and ``A_u = max(a_u, newest t_j)`` the
new one, and the stored sums decay once by ``2^(-k_u / half_life_events[c] - (A_u - a_u) /
half_life_seconds[c])``: the per-event steps of the one-by-one fold telescope to exactly that,
late events included (clamped to no time decay, as there).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from apps.modeling.ml.features import FeatureConfig, State, rating_weight


def _half_life_powers(steps: np.ndarray, seconds: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """``2^(-(steps / h_events[c] + seconds / h_seconds[c]))`` per channel, ``(C, len)``; inf = no decay."""
    out = np.empty((cfg.n_channels, len(steps)), dtype=np.float64)
    for c, (he, hs) in enumerate(zip(cfg.half_life_events, cfg.half_life_seconds, strict=True)):
        exponent = np.zeros(len(steps), dtype=np.float64)
        if not math.isinf(he):
            exponent += steps / he
        if not math.isinf(hs):
            exponent += seconds / hs
        out[c] = np.exp2(-exponent)
    return out


def states_fold_events(
    states: Sequence[State | None],
    user: np.ndarray,
    order: np.ndarray,
    item_pks: np.ndarray,
    ratings: np.ndarray,
    ts: np.ndarray,
    vectors: np.ndarray,
    cfg: FeatureConfig,
) -> list[State | None]:
    """New states for ``states`` with their events folded in; the inputs are not changed.

    Event ``j`` belongs to ``states[user[j]]`` (every state has at least one event) and is folded
    in timestamp order, ties broken by ``order[j]``; ``ts`` are epoch seconds and ``vectors[j]`` the
    item's content vector. A state that is None or empty starts fresh. A result is None when the
    stored sums have another dimension than the vectors (the encoder changed): only a rebuild from
    the stored events can be right then. ``emb_sum`` is dropped (model-specific input embeddings
    are recomputed by whoever activates such a model).

    >>> cfg = FeatureConfig(half_life_events=(math.inf, 1.0), half_life_seconds=(math.inf, math.inf),
    ...                     rating_beta=0.0)
    >>> one = states_fold_events([None], np.array([0]), np.array([0]), np.array([7]), np.array([4.0]),
    ...                          np.array([10.0]), np.array([[1.0, 0.0]]), cfg)
    >>> two = states_fold_events(one, np.array([0]), np.array([0]), np.array([8]), np.array([4.0]),
    ...                          np.array([20.0]), np.array([[0.0, 1.0]]), cfg)
    >>> two[0]["content_sum"].tolist(), two[0]["weight_sum"].tolist(), two[0]["last_items"]
    ([[1.0, 1.0], [0.5, 1.0]], [2.0, 1.5], [7, 8])
    """
    n_users = len(states)
    user = np.asarray(user, dtype=np.int64)
    sort = np.lexsort((np.asarray(order), np.asarray(ts, dtype=np.float64), user))
    user = user[sort]
    item_sorted = np.asarray(item_pks, dtype=np.int64)[sort]
    ratings = np.asarray(ratings, dtype=np.float64)[sort]
    ts = np.asarray(ts, dtype=np.float64)[sort]
    content = np.asarray(vectors, dtype=np.float64)[sort]
    dim = int(content.shape[1])

    counts = np.bincount(user, minlength=n_users)
    if np.any(counts == 0):
        raise ValueError("every state needs at least one event")
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    ends = starts + counts
    fresh = np.array([s is None or int(s["n_events"]) == 0 for s in states], dtype=bool)
    old_anchor = np.array([0.0 if s is None else float(s["anchor_time"]) for s in states], dtype=np.float64)
    old_anchor = np.where(fresh, ts[starts], old_anchor)  # a fresh state anchors at its first event
    # Timestamps ascend within a user, so the running anchor is max(stored anchor, t_j).
    running = np.maximum(old_anchor[user], ts)
    anchor = running[ends - 1]
    position = np.arange(len(user)) - starts[user]
    weights = rating_weight(ratings, cfg) * _half_life_powers(
        (counts[user] - 1 - position).astype(np.float64), anchor[user] - running, cfg
    )
    decay = np.where(fresh, 0.0, _half_life_powers(counts.astype(np.float64), anchor - old_anchor, cfg))
    added_weight = np.add.reduceat(weights, starts, axis=1).T  # (U, C)
    rating_sums = np.add.reduceat(ratings, starts)
    # Each user's new events: a small (C, k) @ (k, D) product (cheaper than any scatter), into one
    # (U, C, D) array, so that decaying and adding the stored sums is one operation for everyone.
    added = np.empty((n_users, cfg.n_channels, dim), dtype=np.float64)
    for u in range(n_users):
        np.matmul(weights[:, starts[u] : ends[u]], content[starts[u] : ends[u]], out=added[u])
    stored = [
        s if not fresh[u] and s is not None and s["content_sum"].shape[1] == dim else None
        for u, s in enumerate(states)
    ]
    old_content = np.zeros((n_users, cfg.n_channels, dim), dtype=np.float64)
    old_weight = np.zeros((n_users, cfg.n_channels), dtype=np.float64)
    for u, state in enumerate(stored):
        if state is not None:
            old_content[u] = state["content_sum"]
            old_weight[u] = state["weight_sum"]
    content_sums = decay.T[:, :, None] * old_content + added
    weight_sums = decay.T * old_weight + added_weight

    out: list[State | None] = []
    for u, state in enumerate(states):
        base = stored[u]
        if base is None and state is not None and not fresh[u]:
            out.append(None)  # stored with another dimension
            continue
        items = [int(pk) for pk in item_sorted[starts[u] : ends[u]]]
        out.append(
            {
                "anchor_time": float(anchor[u]),
                "n_events": (0 if base is None else int(base["n_events"])) + int(counts[u]),
                "rating_sum": (0.0 if base is None else float(base["rating_sum"])) + float(rating_sums[u]),
                "content_sum": content_sums[u],
                "weight_sum": weight_sums[u],
                "emb_sum": None,
                "last_items": [*([] if base is None else base["last_items"]), *items][-cfg.last_n :],
            }
        )
    return out

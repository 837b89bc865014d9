"""Per-user histories and tower inputs on sparse data (CSR), for tenants of any size.

Nothing here builds a users x items array: histories are one sorted event order with per-user
offsets, tower inputs are CSR (users x items) weight matrices times the content matrix, and item
lists are ragged. :func:`tower_inputs` is the batch form of ``features.tower_input`` over
``features.state_from_history`` (tested equal), so what a model is trained and measured on is what
the web process computes from a user's live state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .data import Interactions
from .features import YEAR_S, FeatureConfig, rating_weight

__all__ = ["Histories", "histories", "item_lists", "tower_inputs"]


@dataclass(frozen=True)
class Histories:
    """Events ordered by (user, timestamp, original row); user ``u`` owns ``order[indptr[u]:indptr[u+1]]``."""

    data: Interactions
    order: np.ndarray  # int64 (n_events,) row indices into ``data``
    indptr: np.ndarray  # int64 (n_users + 1,)

    @property
    def lengths(self) -> np.ndarray:
        out: np.ndarray = np.diff(self.indptr)
        return out

    @property
    def rank(self) -> np.ndarray:
        """Position of each ordered event within its user's history (0 = oldest)."""
        users = self.data.user[self.order]
        out: np.ndarray = np.arange(len(self.order), dtype=np.int64) - self.indptr[users]
        return out


def histories(data: Interactions) -> Histories:
    """Sort once; every later step slices (same tie rule as ``data.user_histories``)."""
    order = np.lexsort((np.arange(len(data)), data.ts, data.user))
    indptr = np.zeros(data.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(data.user, minlength=data.n_users), out=indptr[1:])
    return Histories(data, order.astype(np.int64), indptr)


def tower_inputs(
    h: Histories, content: np.ndarray, cfg: FeatureConfig, cut: np.ndarray | None = None
) -> np.ndarray:
    """Tower input rows (n_users, C·D + scalars) from each user's first ``cut[u]`` events (all by default).

    Equals ``tower_input(state_from_history(first cut[u] events))`` per user: per channel the
    weighted content mean (weights of ``features.history_weights``), then the scalar features.
    """
    d = h.data
    n_users = d.n_users
    lengths = h.lengths
    cut_u = lengths if cut is None else np.minimum(np.asarray(cut, dtype=np.int64), lengths)
    rank = h.rank
    users = d.user[h.order]
    keep = rank < cut_u[users]
    rows = h.order[keep]
    u = users[keep]
    r = rank[keep]
    ts = d.ts[rows]
    ratings = d.rating[rows].astype(np.float64)
    # ts is ascending within a user, so the running maximum of history_weights is ts itself
    has = cut_u > 0
    last_ts = np.zeros(n_users, dtype=np.float64)  # the anchor: newest included event
    last_ts[has] = d.ts[h.order[h.indptr[:-1][has] + cut_u[has] - 1]]
    steps_after = (cut_u[u] - 1 - r).astype(np.float64)
    age_s = last_ts[u] - ts
    rw = np.asarray(rating_weight(ratings, cfg), dtype=np.float64)
    n_items = content.shape[0]
    blocks = []
    for he, hs in zip(cfg.half_life_events, cfg.half_life_seconds, strict=True):
        e = 0.0 if math.isinf(he) else steps_after / he
        s = 0.0 if math.isinf(hs) else age_s / hs
        w = rw * 2.0 ** (-(e + s))
        wsum = np.bincount(u, weights=w, minlength=n_users)
        wn = w / np.where(wsum > 0, wsum, 1.0)[u]
        m = sp.csr_matrix((wn.astype(np.float32), (u, d.item[rows])), shape=(n_users, n_items))
        blocks.append(np.asarray(m @ content, dtype=np.float32))
    n_ev = cut_u.astype(np.float64)
    rsum = np.bincount(u, weights=ratings, minlength=n_users)
    scal = [
        np.log1p(n_ev) / math.log(1000.0),
        np.where(has, rsum / np.maximum(n_ev, 1.0) - cfg.rating_center, 0.0),
    ]
    if cfg.use_time_feature:
        scal.append(np.where(has, (last_ts - cfg.time_origin_s) / YEAR_S / 10.0, 0.0))
    blocks.append(np.stack(scal, axis=1).astype(np.float32))
    return np.ascontiguousarray(np.concatenate(blocks, axis=1))


def item_lists(data: Interactions) -> list[np.ndarray]:
    """Sorted distinct item indices per user (ragged), e.g. the items to exclude from a ranking."""
    keys = np.unique(data.user.astype(np.int64) * np.int64(max(data.n_items, 1)) + data.item)
    users = keys // max(data.n_items, 1)
    items = keys % max(data.n_items, 1)
    bounds = np.searchsorted(users, np.arange(data.n_users + 1))
    return [items[bounds[k] : bounds[k + 1]] for k in range(data.n_users)]

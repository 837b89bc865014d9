"""A synthetic tenant with planted structure, for the scale benchmark and tests (pure numpy).

Taste clusters group items; clusters group into genres. An item's content vector is its genre
centre, a weaker cluster direction and noise, so the public content knows the genre well and the
cluster only faintly: a model that reads content alone finds the genre, one that learns from
interactions can also find the cluster. Users like one to three clusters; each event picks, with
probability ``focus``, an item of one of the user's clusters (by item popularity, Zipf), else any
item by popularity. Event counts per user are log-normal (at least 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SyntheticTenant", "synthetic_tenant"]


@dataclass(frozen=True)
class SyntheticTenant:
    item_ids: np.ndarray  # int64 (n_items,) ascending
    content: np.ndarray  # float32 (n_items, dim), unit rows
    user: np.ndarray  # int64 (n,)
    item: np.ndarray  # int64 (n,) item ids
    value: np.ndarray  # float32 (n,) ratings 1..5
    ts: np.ndarray  # float64 (n,) seconds
    item_cluster: np.ndarray  # int64 (n_items,)


def _unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = x / np.linalg.norm(x, axis=-1, keepdims=True)
    return out


def synthetic_tenant(
    n_users: int,
    n_items: int,
    n_events: int,
    *,
    n_clusters: int | None = None,
    clusters_per_genre: int = 5,
    dim: int = 384,
    focus: float = 0.8,
    zipf: float = 0.9,
    seed: int = 0,
) -> SyntheticTenant:
    """``n_events`` events (approximately: per-user counts are rounded) over ``n_users`` x ``n_items``.

    >>> t = synthetic_tenant(50, 40, 500, n_clusters=4, dim=8)
    >>> t.content.shape, len(np.unique(t.user)), 400 < len(t.user) < 600
    ((40, 8), 50, True)
    """
    rng = np.random.default_rng(seed)
    k = n_clusters or max(2, min(200, n_items // 250))
    n_genres = max(1, k // clusters_per_genre)
    genre_c = _unit(rng.normal(size=(n_genres, dim)))
    cluster_c = _unit(rng.normal(size=(k, dim)))
    cluster_genre = rng.integers(0, n_genres, size=k)
    item_cluster = rng.integers(0, k, size=n_items)
    noise = rng.normal(size=(n_items, dim)) / np.sqrt(dim)
    content = _unit(0.7 * genre_c[cluster_genre[item_cluster]] + 0.35 * cluster_c[item_cluster] + 0.8 * noise)
    pop = rng.permutation(n_items) + 1.0
    pop = pop**-zipf
    # per-cluster popularity CDFs over items sorted by cluster
    by_cluster = np.argsort(item_cluster, kind="stable")
    bounds = np.searchsorted(item_cluster[by_cluster], np.arange(k + 1))
    cum = np.cumsum(pop[by_cluster])
    base = np.concatenate([[0.0], cum])
    global_cdf = np.cumsum(pop) / pop.sum()
    # users: 1-3 clusters each, log-normal event counts scaled to n_events
    counts = rng.lognormal(mean=0.0, sigma=0.8, size=n_users)
    counts = np.maximum(3, np.rint(counts / counts.sum() * n_events)).astype(np.int64)
    n_liked = rng.integers(1, 4, size=n_users)
    liked = rng.integers(0, k, size=(n_users, 3))
    user = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    n = len(user)
    pick = liked[user, (rng.random(n) * n_liked[user]).astype(np.int64)]
    lo, hi = base[bounds[pick]], base[bounds[pick + 1]]
    empty = hi <= lo
    u = lo + rng.random(n) * (hi - lo)
    idx = np.clip(np.searchsorted(cum, u, side="right"), bounds[pick], np.maximum(bounds[pick + 1] - 1, 0))
    item = by_cluster[np.minimum(idx, n_items - 1)]
    wander = (rng.random(n) >= focus) | empty
    item[wander] = np.minimum(np.searchsorted(global_cdf, rng.random(int(wander.sum()))), n_items - 1)
    start = rng.uniform(1.5e9, 1.6e9, size=n_users)
    ts = start[user] + rng.uniform(0.0, 3e7, size=n)
    order = np.lexsort((ts, user))
    user, item, ts = user[order], item[order], ts[order]
    value = rng.integers(1, 6, size=n).astype(np.float32)
    ids = np.arange(1, n_items + 1, dtype=np.int64)
    return SyntheticTenant(
        ids, content.astype(np.float32), user, ids[item], value, ts, item_cluster.astype(np.int64)
    )

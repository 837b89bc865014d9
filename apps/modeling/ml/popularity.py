"""Differentially private item popularity (cold start and the popularity coordinate).

Privacy guarantee: :func:`dp_popularity` is (epsilon, delta)-DP at the USER
level. Each user's contribution is capped to at most ``cap`` distinct items
with weight ``1/sqrt(k_u)`` each, k_u = min(#items of u, cap) (so its L2 norm
is exactly 1 whatever the history, and each weight is <= 1),
then i.i.d. Gaussian noise calibrated by the analytic Gaussian mechanism
(Balle & Wang 2018; ``accounting.gaussian_sigma``) for L2 sensitivity 1 is added to every item's count.
Adding/removing a user changes the count vector by at most 1 in L2 norm.
Which items a user keeps (when over the cap) is chosen at random, so the
selection itself depends only on that user's data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .accounting import gaussian_sigma

__all__ = ["DPPopularity", "dp_popularity", "popularity_feature"]


@dataclass(frozen=True)
class DPPopularity:
    """Noisy capped counts (in "users" units) and the budget they cost."""

    counts: np.ndarray  # (n_items,) noisy weighted counts, may be negative
    epsilon: float
    delta: float
    sigma: float  # noise std on the sensitivity-1 weighted counts
    cap: int


def dp_popularity(
    user: np.ndarray,
    item: np.ndarray,
    n_items: int,
    epsilon: float,
    delta: float,
    cap: int = 50,
    seed: int = 0,
    sigma: float | None = None,
) -> DPPopularity:
    """Gaussian-mechanism release of per-user-capped, norm-1 weighted item counts.

    ``epsilon=inf`` returns the exact weighted counts with no noise (non-private). ``sigma``
    overrides the analytic-Gaussian noise for (epsilon, delta) when the caller composes this
    release with others (``accounting.split_gaussian_sigmas``); epsilon/delta are then recorded
    as given (the budget of the composed release).

    >>> r = dp_popularity(np.array([0, 0, 1]), np.array([0, 1, 0]), 3, epsilon=math.inf, delta=0.0)
    >>> r.counts.round(3).tolist()
    [1.707, 0.707, 0.0]
    """
    rng = np.random.default_rng(seed)
    user = np.asarray(user, dtype=np.int64)
    item = np.asarray(item, dtype=np.int64)
    pairs = np.unique(np.stack([user, item], axis=1), axis=0)
    # random order, then keep the first `cap` pairs of each user
    perm = rng.permutation(len(pairs))
    pairs = pairs[perm]
    order = np.argsort(pairs[:, 0], kind="stable")
    pairs = pairs[order]
    starts = np.searchsorted(pairs[:, 0], pairs[:, 0], side="left")
    rank = np.arange(len(pairs)) - starts
    kept = pairs[rank < cap]
    per_user = np.bincount(kept[:, 0])
    w = 1.0 / np.sqrt(per_user[kept[:, 0]])
    counts = np.bincount(kept[:, 1], weights=w, minlength=n_items).astype(np.float64)
    if math.isinf(epsilon):
        return DPPopularity(counts, math.inf, 0.0, 0.0, cap)
    if sigma is None:
        sigma = gaussian_sigma(epsilon, delta, 1.0)
    noisy = counts + rng.normal(0.0, sigma, size=n_items)
    return DPPopularity(noisy, float(epsilon), float(delta), float(sigma), cap)


def popularity_feature(counts: np.ndarray, sigma: float = 0.0, k_sigma: float = 3.0) -> np.ndarray:
    """log1p of clipped counts scaled to [0, 1]: the item-side popularity coordinate.

    Counts below ``k_sigma * sigma`` are zeroed: with thousands of items most
    true counts are ~0, and un-thresholded noise would make random items look
    popular. Post-processing of a DP release, so it costs no extra privacy.

    >>> popularity_feature(np.array([-3.0, 0.0, np.e - 1])).round(3).tolist()
    [0.0, 0.0, 1.0]
    """
    c = np.asarray(counts, dtype=np.float64)
    c = np.where(c > k_sigma * sigma, c, 0.0) if sigma > 0 else c
    c = np.log1p(np.clip(c, 0.0, None))
    m = c.max()
    return (c / m if m > 0 else c).astype(np.float32)

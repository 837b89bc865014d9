"""Interaction data in plain numpy arrays and the P1 evaluation split.

Pure numpy (no Django, no torch) so that training, evaluation and tests share
exactly one definition of "the data" and of protocol P1.

Items are indexed ``0..n_items-1`` in the order of ``Interactions.item_ids``
(ascending external item id); content vectors passed around the ML core must be
aligned to that order. Users are indexed ``0..n_users-1`` in the order of
``Interactions.user_ids``.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Interactions",
    "P1Split",
    "from_arrays",
    "load_movielens",
    "p1_split",
    "user_histories",
]


@dataclass(frozen=True)
class Interactions:
    """Interaction log as parallel arrays (one entry per rating event).

    ``user``/``item`` are dense indices; ``user_ids``/``item_ids`` map them back
    to external ids. ``ts`` is seconds since the epoch (float64).
    """

    user: np.ndarray  # int64 (n,)
    item: np.ndarray  # int64 (n,)
    rating: np.ndarray  # float32 (n,)
    ts: np.ndarray  # float64 (n,)
    user_ids: np.ndarray  # int64 (n_users,)
    item_ids: np.ndarray  # int64 (n_items,)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> Interactions:
        """Rows where ``mask`` is true, keeping the same user/item index spaces."""
        return Interactions(
            self.user[mask],
            self.item[mask],
            self.rating[mask],
            self.ts[mask],
            self.user_ids,
            self.item_ids,
        )


def from_arrays(
    user_ext: np.ndarray,
    item_ext: np.ndarray,
    rating: np.ndarray,
    ts: np.ndarray,
    item_ids: np.ndarray | None = None,
) -> Interactions:
    """Build :class:`Interactions` from external ids.

    ``item_ids`` fixes the item universe (e.g. every movie in the catalogue,
    even unrated ones); it defaults to the rated items. It is sorted ascending.

    >>> d = from_arrays(np.array([7, 7, 3]), np.array([10, 20, 10]),
    ...                 np.array([4., 3., 5.]), np.array([1., 2., 3.]))
    >>> d.n_users, d.n_items, d.user.tolist(), d.item.tolist()
    (2, 2, [1, 1, 0], [0, 1, 0])
    """
    user_ext = np.asarray(user_ext, dtype=np.int64)
    item_ext = np.asarray(item_ext, dtype=np.int64)
    user_ids, user = np.unique(user_ext, return_inverse=True)
    item_ids = np.unique(item_ext) if item_ids is None else np.unique(np.asarray(item_ids, dtype=np.int64))
    item = np.searchsorted(item_ids, item_ext)
    if np.any(item >= len(item_ids)) or np.any(item_ids[np.minimum(item, len(item_ids) - 1)] != item_ext):
        raise ValueError("interaction references an item id outside item_ids")
    return Interactions(
        user=user.astype(np.int64),
        item=item.astype(np.int64),
        rating=np.asarray(rating, dtype=np.float32),
        ts=np.asarray(ts, dtype=np.float64),
        user_ids=user_ids.astype(np.int64),
        item_ids=item_ids.astype(np.int64),
    )


def load_movielens(dataset_dir: str) -> Interactions:
    """Load a MovieLens-style folder (``ratings.csv`` and optional ``movies.csv``).

    The item universe is every movie in ``movies.csv`` when present (so that
    content vectors for all 9,742 ml-latest-small movies line up), otherwise
    the rated items.
    """
    users: list[int] = []
    items: list[int] = []
    ratings: list[float] = []
    stamps: list[float] = []
    with open(os.path.join(dataset_dir, "ratings.csv"), newline="") as fh:
        for row in csv.DictReader(fh):
            users.append(int(row["userId"]))
            items.append(int(row["movieId"]))
            ratings.append(float(row["rating"]))
            stamps.append(float(row["timestamp"]))
    item_ids = None
    movies = os.path.join(dataset_dir, "movies.csv")
    if os.path.exists(movies):
        with open(movies, newline="") as fh:
            item_ids = np.array([int(r["movieId"]) for r in csv.DictReader(fh)], dtype=np.int64)
        item_ids = np.union1d(item_ids, np.asarray(items, dtype=np.int64))
    return from_arrays(np.array(users), np.array(items), np.array(ratings), np.array(stamps), item_ids)


def user_histories(data: Interactions) -> list[np.ndarray]:
    """Row indices of each user's events, sorted by timestamp.

    Ties in timestamp keep file order (stable sort), which makes the split
    deterministic.
    """
    order = np.lexsort((np.arange(len(data)), data.ts, data.user))
    bounds = np.searchsorted(data.user[order], np.arange(data.n_users + 1))
    return [order[bounds[u] : bounds[u + 1]] for u in range(data.n_users)]


@dataclass(frozen=True)
class P1Split:
    """Protocol P1: per user, the last 10% (>= 1) of events by time are test."""

    train: Interactions
    test_items: list[np.ndarray]  # per user, test item indices (may be empty)


def p1_split(data: Interactions, test_fraction: float = 0.1) -> P1Split:
    """Hold out, per user, the last ``max(1, int(n * 0.1))`` events (by timestamp) as test.

    Why: P1 is the agreed offline protocol; it is temporal so that models are
    judged on predicting *future* interactions from the past. A user with a
    single event keeps it as test and has an empty training history.

    >>> d = from_arrays(np.zeros(12, int), np.arange(12), np.ones(12), np.arange(12.)[::-1])
    >>> s = p1_split(d)
    >>> s.test_items[0].tolist(), len(s.train)
    ([0], 11)
    """
    train_mask = np.ones(len(data), dtype=bool)
    test_items: list[np.ndarray] = []
    for rows in user_histories(data):
        n = len(rows)
        if n == 0:
            test_items.append(np.zeros(0, dtype=np.int64))
            continue
        n_test = max(1, int(n * test_fraction))
        test_rows = rows[n - n_test :]
        train_mask[test_rows] = False
        test_items.append(np.unique(data.item[test_rows]))
    return P1Split(train=data.subset(train_mask), test_items=test_items)

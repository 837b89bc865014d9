"""Real-time user state (O(1) per event) and the user-tower input vector.

Shared verbatim by training (batch construction), offline evaluation and the
web process, so that what the tower is trained on is what it is served.

User state format (plain Python/numpy, JSON-able after ``.tolist()``)::

    {
      "anchor_time": float,          # timestamp of the newest event (the anchor)
      "n_events": int,               # number of events folded in
      "rating_sum": float,           # Σ ratings (for the mean-rating feature)
      "content_sum": (C, D) float64, # per decay channel c: Σ_j w_cj · content[j]
      "weight_sum": (C,) float64,    # per decay channel c: Σ_j w_cj
      "emb_sum": (C, E) float64,     # optional: Σ_j w_cj · input_emb[j] of the
                                     # ACTIVE model (E = its input-embedding dim);
                                     # absent/None for models without input embeddings
      "last_items": list[int],       # last N item ids, newest last (not read by the tower)
    }

Weights (why: recent and liked items say most about the next interaction)::

    w_cj = rating_weight(r_j) · 2^(-(t_anchor - t_j) / half_life_s[c])
                              · 2^(-(#events after j) / half_life_events[c])

Anchor-time trick: all sums are stored *relative to the newest event*. A new
event at time t multiplies every sum by 2^(-(t - t_anchor)/h_s) · 2^(-1/h_e)
and adds the new item with weight rating_weight(r); then t_anchor = t. This is
O(D) per event, independent of history length, never overflows, and the tower
reads only ratios (sum / weight_sum), so no decay to "now" is needed at read
time (the ratio is invariant to a common factor).

Events are assumed to arrive in timestamp order; a late event (t < anchor) is
folded in with zero time decay (clamped), and the batch recompute applies the
same rule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "FeatureConfig",
    "feature_config",
    "history_weights",
    "new_state",
    "rating_weight",
    "recompute_emb_sum",
    "scalar_features",
    "state_add_event",
    "state_from_history",
    "tower_input",
    "tower_input_dim",
]

YEAR_S = 365.25 * 86400.0

State = dict[str, Any]  # the user state documented above


@dataclass(frozen=True)
class FeatureConfig:
    """How events are weighted and what the tower reads.

    ``half_life_events``/``half_life_seconds`` define one decay channel per
    entry (``math.inf`` = no decay). ``rating_beta`` controls how strongly
    ratings weight history items: ``exp(beta * (r - rating_center))``.
    """

    half_life_events: tuple[float, ...] = (math.inf, 10.0)
    half_life_seconds: tuple[float, ...] = (math.inf, math.inf)
    rating_beta: float = 0.3
    rating_center: float = 3.5
    last_n: int = 20
    use_time_feature: bool = True
    time_origin_s: float = 946684800.0  # 2000-01-01, only shifts a scalar feature

    @property
    def n_channels(self) -> int:
        return len(self.half_life_events)

    def __post_init__(self) -> None:
        if len(self.half_life_events) != len(self.half_life_seconds):
            raise ValueError("one half-life per channel in both tuples")


_DEPLOYED = FeatureConfig()


def feature_config() -> FeatureConfig:
    """This deployment's feature configuration: stored user states are built with it (profiles), new
    versions are trained with it and serving reads states with it (modeling). One place for both sides."""
    return _DEPLOYED


def rating_weight(rating: float | np.ndarray, cfg: FeatureConfig) -> float | np.ndarray:
    """Positive weight of a rating (every rating is an interaction).

    >>> round(float(rating_weight(3.5, FeatureConfig())), 3)
    1.0
    """
    return np.exp(cfg.rating_beta * (np.asarray(rating, dtype=np.float64) - cfg.rating_center))


def _decay(dt: float, steps: float, cfg: FeatureConfig) -> np.ndarray:
    dt = max(float(dt), 0.0)
    out = np.empty(cfg.n_channels, dtype=np.float64)
    for c, (he, hs) in enumerate(zip(cfg.half_life_events, cfg.half_life_seconds, strict=True)):
        e = 0.0 if math.isinf(he) else steps / he
        s = 0.0 if math.isinf(hs) else dt / hs
        out[c] = 2.0 ** (-(e + s))
    return out


def new_state(dim: int, cfg: FeatureConfig, emb_dim: int | None = None) -> State:
    """Empty user state for content vectors of size ``dim``."""
    return {
        "anchor_time": 0.0,
        "n_events": 0,
        "rating_sum": 0.0,
        "content_sum": np.zeros((cfg.n_channels, dim), dtype=np.float64),
        "weight_sum": np.zeros(cfg.n_channels, dtype=np.float64),
        "emb_sum": None if emb_dim is None else np.zeros((cfg.n_channels, emb_dim), dtype=np.float64),
        "last_items": [],
    }


def state_add_event(
    state: State,
    item_id: int,
    rating: float,
    ts: float,
    content_vec: np.ndarray,
    cfg: FeatureConfig,
    emb_vec: np.ndarray | None = None,
) -> State:
    """Fold one event into ``state`` in place (O(dim)) and return it.

    >>> cfg = FeatureConfig(half_life_events=(math.inf, 1.0), half_life_seconds=(math.inf, math.inf),
    ...                     rating_beta=0.0)
    >>> s = new_state(2, cfg)
    >>> _ = state_add_event(s, 7, 4.0, 10.0, np.array([1.0, 0.0]), cfg)
    >>> _ = state_add_event(s, 8, 4.0, 20.0, np.array([0.0, 1.0]), cfg)
    >>> s["content_sum"].tolist(), s["weight_sum"].tolist(), s["last_items"]
    ([[1.0, 1.0], [0.5, 1.0]], [2.0, 1.5], [7, 8])
    """
    if state["n_events"] > 0:
        f = _decay(ts - state["anchor_time"], 1.0, cfg)
        state["content_sum"] *= f[:, None]
        state["weight_sum"] *= f
        if state.get("emb_sum") is not None:
            state["emb_sum"] *= f[:, None]
        state["anchor_time"] = max(float(ts), float(state["anchor_time"]))
    else:
        state["anchor_time"] = float(ts)
    w = float(rating_weight(rating, cfg))
    state["content_sum"] += w * np.asarray(content_vec, dtype=np.float64)[None, :]
    state["weight_sum"] += w
    if state.get("emb_sum") is not None:
        if emb_vec is None:
            raise ValueError("state carries emb_sum: pass the active model's input vector")
        state["emb_sum"] += w * np.asarray(emb_vec, dtype=np.float64)[None, :]
    state["n_events"] += 1
    state["rating_sum"] += float(rating)
    state["last_items"] = [*state["last_items"], int(item_id)][-cfg.last_n :]
    return state


def history_weights(ratings: np.ndarray, ts: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Closed-form channel weights ``(C, n)`` of a time-sorted history.

    Equals what repeated :func:`state_add_event` produces (up to float error).
    """
    ratings = np.asarray(ratings, dtype=np.float64)
    ts = np.asarray(ts, dtype=np.float64)
    n = len(ts)
    if n == 0:
        return np.zeros((cfg.n_channels, 0))
    # effective elapsed time with the clamping rule (running max of timestamps)
    run = np.maximum.accumulate(ts)
    age_s = run[-1] - run
    # late events: the anchor does not move back, so their own dt is 0 -> use running max
    steps_after = (n - 1 - np.arange(n)).astype(np.float64)
    rw = rating_weight(ratings, cfg)
    out = np.empty((cfg.n_channels, n), dtype=np.float64)
    for c, (he, hs) in enumerate(zip(cfg.half_life_events, cfg.half_life_seconds, strict=True)):
        e = 0.0 if math.isinf(he) else steps_after / he
        s = 0.0 if math.isinf(hs) else age_s / hs
        out[c] = rw * 2.0 ** (-(e + s))
    return out


def state_from_history(
    items: Sequence[int],
    ratings: np.ndarray,
    ts: np.ndarray,
    content: np.ndarray,
    cfg: FeatureConfig,
    item_index: np.ndarray | None = None,
    input_emb: np.ndarray | None = None,
) -> State:
    """Batch recompute of a state from a history in event order.

    ``content``/``input_emb`` are indexed by ``item_index`` (default: the item
    ids themselves are row indices). Used by the background job that rebuilds
    states (e.g. ``emb_sum`` when a model with input embeddings goes live).
    """
    item_arr = np.asarray(items, dtype=np.int64)
    rows = item_arr if item_index is None else np.asarray(item_index, dtype=np.int64)
    w = history_weights(ratings, ts, cfg)
    st = new_state(content.shape[1], cfg, None if input_emb is None else input_emb.shape[1])
    if len(item_arr) == 0:
        return st
    st["anchor_time"] = float(np.max(ts))
    st["n_events"] = len(item_arr)
    st["rating_sum"] = float(np.sum(ratings))
    st["content_sum"] = w @ content[rows].astype(np.float64)
    st["weight_sum"] = w.sum(axis=1)
    if input_emb is not None:
        st["emb_sum"] = w @ input_emb[rows].astype(np.float64)
    st["last_items"] = [int(i) for i in item_arr[-cfg.last_n :]]
    return st


def recompute_emb_sum(
    state_history_weights: np.ndarray, rows: np.ndarray, input_emb: np.ndarray
) -> np.ndarray:
    """``emb_sum`` for a new model from stored history weights (C, n) and item rows."""
    return state_history_weights @ input_emb[np.asarray(rows, dtype=np.int64)].astype(np.float64)


def tower_input_dim(content_dim: int, cfg: FeatureConfig, emb_dim: int | None = None) -> int:
    """Length of :func:`tower_input` output."""
    return cfg.n_channels * (content_dim + (emb_dim or 0)) + 2 + int(cfg.use_time_feature)


def scalar_features(n_events: int, rating_sum: float, anchor_time: float, cfg: FeatureConfig) -> list[float]:
    """The scalar tail of the tower input (shared with batch training code)."""
    scal = [
        math.log1p(n_events) / math.log(1000.0),
        (rating_sum / n_events - cfg.rating_center) if n_events else 0.0,
    ]
    if cfg.use_time_feature:
        scal.append(((anchor_time - cfg.time_origin_s) / YEAR_S / 10.0) if n_events else 0.0)
    return scal


def tower_input(state: State, cfg: FeatureConfig) -> np.ndarray:
    """User-tower input ``z``: [content mean per channel, scalars, emb mean per channel].

    Scalars: log1p(n_events)/log(1000), mean rating - rating_center, and (if
    enabled) years since ``time_origin_s`` of the newest event / 10. The emb
    block is present only when the state carries ``emb_sum`` (models with
    learned input embeddings). An empty state maps to zeros (cold start ->
    the tower's bias output).

    >>> cfg = FeatureConfig(half_life_events=(math.inf,), half_life_seconds=(math.inf,), use_time_feature=False)
    >>> s = new_state(2, cfg)
    >>> tower_input(s, cfg).tolist()
    [0.0, 0.0, 0.0, 0.0]
    """
    ws = np.asarray(state["weight_sum"], dtype=np.float64)
    denom = np.where(ws > 0, ws, 1.0)[:, None]
    parts: list[np.ndarray] = [(np.asarray(state["content_sum"], dtype=np.float64) / denom).ravel()]
    parts.append(
        np.asarray(
            scalar_features(
                int(state["n_events"]), float(state["rating_sum"]), float(state["anchor_time"]), cfg
            ),
            dtype=np.float64,
        )
    )
    es = state.get("emb_sum")
    if es is not None:
        parts.append((np.asarray(es, dtype=np.float64) / denom).ravel())
    return np.concatenate(parts).astype(np.float32)

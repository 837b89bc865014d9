"""Numpy-only serving path: user tower forward and item-vector materialisation.

The web process imports only this module (and ``features``), never torch. The
functions reproduce ``towers.SottoModel`` exactly (tested against torch).
Weights are the ``TrainResult.weights`` dict (keys as exported by
``train.export_weights``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["item_vectors", "recommend", "score", "user_vectors"]


def _emb_part(weights: dict[str, np.ndarray], h: np.ndarray) -> np.ndarray:
    e: np.ndarray = np.einsum("bcn,en->bce", h, weights["user.emb.weight"])
    return e.reshape(e.shape[0], -1)


def user_vectors(weights: dict[str, np.ndarray], z: np.ndarray, normalize: bool = True) -> np.ndarray:
    """User interest vectors from tower inputs ``z`` (rows of ``features.tower_input``).

    ``z`` already contains the emb-mean block when the model has input
    embeddings (the state's ``emb_sum``/``weight_sum``), so serving never
    touches the (n_items x E) input-embedding matrix.
    """
    z = np.atleast_2d(np.asarray(z, dtype=np.float32))
    q = z @ weights["user.skip.weight"].T + weights["user.skip.bias"]
    if "user.fc1.weight" in weights:
        hid = np.maximum(z @ weights["user.fc1.weight"].T + weights["user.fc1.bias"], 0.0)
        q = q + hid @ weights["user.fc2.weight"].T + weights["user.fc2.bias"]
    if normalize:
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = q.astype(np.float32)
    return out


def input_embedding_table(weights: dict[str, np.ndarray]) -> np.ndarray | None:
    """(n_items, E) per-item input vectors for the state's ``emb_sum`` (None if unused)."""
    w = weights.get("user.emb.weight")
    return None if w is None else np.ascontiguousarray(w.T)


def item_vectors(
    weights: dict[str, np.ndarray], content: np.ndarray, extras: np.ndarray, normalize: bool = True
) -> np.ndarray:
    """Materialise (n_items, D+K) item vectors once per model version (for pgvector).

    Seed item side: [content, extras]; learned: [content @ A + e_id, extras * s]; public-feature
    tower (``ml.tower``): [content @ W, extras, pad] with the pad bringing every row to the stored
    radius, so the cosine ranks like the dot product the tower was trained on (a row already past
    the radius, e.g. a new item, keeps pad 0).
    """
    base = np.asarray(content, dtype=np.float32)
    ex = np.asarray(extras, dtype=np.float32)
    if "item.proj" in weights:
        v = np.concatenate([base @ weights["item.proj"], ex], axis=1)
        radius = float(weights["item.radius"][0])
        pad = np.sqrt(np.maximum(radius**2 - (v.astype(np.float64) ** 2).sum(axis=1), 0.0)).astype(np.float32)
        v = np.concatenate([v, pad[:, None]], axis=1)
        if normalize:
            v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        out_t: np.ndarray = v.astype(np.float32)
        return out_t
    if "item.adapter" in weights:
        base = base @ weights["item.adapter"]
        ex = ex * weights["item.extra_scale"]
    if "item.id_emb" in weights:
        base = base + weights["item.id_emb"]
    v = np.concatenate([base, ex], axis=1)
    if normalize:
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    out: np.ndarray = v.astype(np.float32)
    return out


def score(user_vecs: np.ndarray, item_vecs: np.ndarray) -> np.ndarray:
    """Cosine scores (both sides already L2-normalised)."""
    out: np.ndarray = user_vecs @ item_vecs.T
    return out


def recommend(
    user_vec: np.ndarray, item_vecs: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Top-k item indices for one user (ties -> lower index)."""
    s = np.asarray(score(np.atleast_2d(user_vec), item_vecs)[0], dtype=np.float64)
    if exclude is not None and len(exclude):
        s[np.asarray(exclude, dtype=np.int64)] = -np.inf
    return np.argsort(-s, kind="stable")[:k]

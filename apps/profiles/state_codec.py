"""Binary form of a user state (``apps.modeling.ml.features`` format) for the ``UserState.data`` column.

Fixed little-endian layout, decoded with ``numpy.frombuffer`` (no JSON of thousands of floats on the
hot path): header ``<4sHHHHddq`` = magic ``SST1``, channels C, content dim D, embedding dim E (0 = no
``emb_sum``), len(last_items), anchor_time, rating_sum, n_events; then ``last_items`` (int64),
``weight_sum`` (C float64), ``content_sum`` (C·D float64), ``emb_sum`` (C·E float64).
Float64 throughout so that encode/decode is exact.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

_MAGIC = b"SST1"
_HEADER = struct.Struct("<4sHHHHddq")


class StateCorrupt(ValueError):
    """Stored bytes are not a state this code can read."""


def encode_state(state: dict[str, Any]) -> bytes:
    content = np.ascontiguousarray(state["content_sum"], dtype="<f8")
    weights = np.ascontiguousarray(state["weight_sum"], dtype="<f8")
    emb = state.get("emb_sum")
    emb_arr = None if emb is None else np.ascontiguousarray(emb, dtype="<f8")
    channels, dim = content.shape
    last = np.asarray(state["last_items"], dtype="<i8")
    header = _HEADER.pack(
        _MAGIC,
        channels,
        dim,
        0 if emb_arr is None else emb_arr.shape[1],
        len(last),
        float(state["anchor_time"]),
        float(state["rating_sum"]),
        int(state["n_events"]),
    )
    parts = [header, last.tobytes(), weights.tobytes(), content.tobytes()]
    if emb_arr is not None:
        parts.append(emb_arr.tobytes())
    return b"".join(parts)


def decode_state(data: bytes | memoryview) -> dict[str, Any]:
    """A mutable state dict (arrays are writable copies)."""
    buf = bytes(data)
    if len(buf) < _HEADER.size:
        raise StateCorrupt("state too short")
    magic, channels, dim, emb_dim, n_last, anchor, rating_sum, n_events = _HEADER.unpack_from(buf)
    if magic != _MAGIC:
        raise StateCorrupt("unknown state format")
    expected = _HEADER.size + 8 * (n_last + channels + channels * dim + channels * emb_dim)
    if len(buf) != expected:
        raise StateCorrupt("state length does not match its header")
    offset = _HEADER.size

    def take(count: int, dtype: str) -> np.ndarray:
        nonlocal offset
        arr = np.frombuffer(buf, dtype=dtype, count=count, offset=offset).copy()
        offset += 8 * count
        return arr

    last_items = [int(x) for x in take(n_last, "<i8")]
    weight_sum = take(channels, "<f8").astype(np.float64, copy=False)
    content_sum = take(channels * dim, "<f8").astype(np.float64, copy=False).reshape(channels, dim)
    emb_sum = (
        take(channels * emb_dim, "<f8").astype(np.float64, copy=False).reshape(channels, emb_dim)
        if emb_dim
        else None
    )
    return {
        "anchor_time": anchor,
        "n_events": int(n_events),
        "rating_sum": rating_sum,
        "content_sum": content_sum,
        "weight_sum": weight_sum,
        "emb_sum": emb_sum,
        "last_items": last_items,
    }

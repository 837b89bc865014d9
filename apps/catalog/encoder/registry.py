"""The process-wide encoders (``get_encoder``) and forgetting every loaded model."""

from __future__ import annotations

import os
import threading
from typing import Any

from apps.catalog.encoder.loading import _CACHE, _CACHE_LOCK
from apps.catalog.encoder.text_encoder import TextEncoder


def clear_model_cache() -> None:
    """Forget loaded models (tests; a model file replaced on disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    with _ENCODERS_LOCK:
        _ENCODERS.clear()


_ENCODERS: dict[tuple[str, str], TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_encoder(
    model_path: str | os.PathLike[str] | None = None, precision: str = "fp32", **kwargs: Any
) -> TextEncoder:
    """The process-wide ``TextEncoder`` for (path, precision), so its query LRU is shared too."""
    key = (str(model_path) if model_path is not None else "", precision)
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = TextEncoder(model_path, precision, **kwargs)
            _ENCODERS[key] = enc
    return enc

"""``TextEncoder``: batch item encoding and LRU-cached query encoding over a once-loaded model."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apps.catalog.encoder.loading import _CACHE, _CACHE_LOCK, _load
from apps.catalog.encoder.model_path import (
    PRECISIONS,
    EncoderConfigError,
    _default_cache_dir,
    _default_threads,
    default_model_path,
    validate_model_path,
)
from apps.catalog.encoder.tokenizer import _pad, _pool


@dataclass(frozen=True)
class EncodeResult:
    """Vectors for a list of texts, in input order.

    ``truncated[i]`` is True when text i was longer than the model window and was cut;
    ``unk_fraction[i]`` is the share of its word pieces that the vocabulary does not know
    (high for Chinese text: the vector then says little about the text).
    """

    vectors: np.ndarray
    truncated: list[bool]
    unk_fraction: list[float] = field(default_factory=list)


class TextEncoder:
    """Encode item texts (batch) and search queries (one at a time, LRU-cached).

    Construction validates the model folder and loads the model once per process
    (shared by every ``TextEncoder`` with the same path and precision).

    ``num_threads``: torch/onnxruntime intra-op threads; default ``SOTTO_ENCODER_THREADS``
    or the cores this process may use. ``torch.set_num_threads`` is process-wide, so it is
    only called when the value differs. ``cache_dir``: where exported ONNX files live
    (default ``SOTTO_MODEL_CACHE_DIR`` or ``var/models/``).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        precision: str = "fp32",
        *,
        num_threads: int | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        query_cache_size: int = 1024,
    ) -> None:
        if precision not in PRECISIONS:
            raise EncoderConfigError(f"unknown encoder precision {precision!r}; choose one of {PRECISIONS}")
        if query_cache_size < 0:
            raise EncoderConfigError("query_cache_size must be >= 0")
        if num_threads is not None and num_threads < 1:
            raise EncoderConfigError("num_threads must be >= 1")
        info = validate_model_path(model_path if model_path is not None else default_model_path())
        threads = num_threads if num_threads is not None else _default_threads()
        cdir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        key = (str(info.path), precision)
        with _CACHE_LOCK:  # loads are rare; one lock keeps two threads from exporting at once
            loaded = _CACHE.get(key)
            if loaded is None:
                loaded = _load(info, precision, threads, cdir)
                _CACHE[key] = loaded
                _CACHE.setdefault((key[0], loaded.precision), loaded)  # "int8" is also "int8-onnx"
        self._m = loaded
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_cache_size = query_cache_size
        self._query_lock = threading.Lock()

    @property
    def dim(self) -> int:
        """Vector dimension (the model's hidden size)."""
        return self._m.info.hidden_size

    @property
    def max_seq_length(self) -> int:
        """Token window, special tokens included; longer texts are truncated."""
        return self._m.info.max_seq_length

    @property
    def precision(self) -> str:
        """The implementation actually used (``int8`` resolves to ``int8-onnx`` or ``int8-torch``)."""
        return self._m.precision

    @property
    def model_id(self) -> str:
        """``<model name>/<precision>``, e.g. ``all-MiniLM-L6-v2/int8-onnx``: store it with vectors.

        int8 implementations give slightly different vectors, so the resolved one is named.
        """
        return f"{self._m.info.name}/{self._m.precision}"

    def encode(
        self, texts: Sequence[str], batch_size: int = 32, *, sort_by_length: bool = True
    ) -> EncodeResult:
        """Vectors (n, dim) float32, L2-normalised, in input order, plus per-text flags.

        ``sort_by_length`` batches texts of similar token length together (less padding);
        it never changes a vector beyond float rounding.
        """
        if isinstance(texts, str):
            raise TypeError("encode() takes a list of texts, not one string")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        for t in texts:
            if not isinstance(t, str):
                raise TypeError(f"texts must be str, got {type(t).__name__}")
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        if n == 0:
            return EncodeResult(vectors=out, truncated=[], unk_fraction=[])
        toks = self._m.tokenizer(texts)
        lengths = np.fromiter((len(r) for r in toks.ids), dtype=np.int64, count=n)
        order = np.argsort(lengths, kind="stable") if sort_by_length else np.arange(n)
        pad_id = self._m.tokenizer.pad_id
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            ids, mask, types = _pad([toks.ids[i] for i in idx], pad_id)
            out[idx] = _pool(self._m.forward(ids, mask, types), mask)
        return EncodeResult(vectors=out, truncated=toks.truncated, unk_fraction=toks.unk_fraction)

    def encode_query(self, text: str) -> np.ndarray:
        """One query vector (dim,), read-only, from a bounded LRU cache keyed by the stripped text.

        Searches repeat a lot; a hit costs a dict lookup instead of a forward pass.
        """
        if not isinstance(text, str):
            raise TypeError(f"query must be str, got {type(text).__name__}")
        key = text.strip()
        with self._query_lock:
            hit = self._query_cache.get(key)
            if hit is not None:
                self._query_cache.move_to_end(key)
                return hit
        vec: np.ndarray = self.encode([key], batch_size=1).vectors[0].copy()
        vec.flags.writeable = False
        if self._query_cache_size == 0:
            return vec
        with self._query_lock:
            self._query_cache[key] = vec
            self._query_cache.move_to_end(key)
            while len(self._query_cache) > self._query_cache_size:
                self._query_cache.popitem(last=False)
            return self._query_cache[key]

    @property
    def query_cache_len(self) -> int:
        """Entries in the query LRU (bounded by ``query_cache_size``)."""
        return len(self._query_cache)

    def clear_query_cache(self) -> None:
        with self._query_lock:
            self._query_cache.clear()

"""Word pieces for the model (the ``tokenizers`` library, not transformers), padding and pooling."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from apps.catalog.encoder.model_path import EncoderConfigError, ModelInfo, _offline_env


@dataclass(frozen=True)
class _Tokens:
    ids: list[list[int]]
    truncated: list[bool]
    unk_fraction: list[float]


class _Tokenizer:
    """Word pieces for the model, cut to its window, with truncation and [UNK] bookkeeping.

    Uses the ``tokenizers`` library on ``tokenizer.json`` directly: importing transformers
    pulls in torch (about 5 s and 300 MB per web worker), which the ONNX precisions never
    need. ``transformers.AutoTokenizer`` is only used for folders with just ``vocab.txt``.
    Both give identical ids (tested).
    """

    def __init__(self, info: ModelInfo) -> None:
        self.window = info.max_seq_length
        self._fast: Any = None
        self._hf: Any = None
        path = info.path
        try:
            if (path / "tokenizer.json").is_file():
                from tokenizers import Tokenizer

                tk = Tokenizer.from_file(str(path / "tokenizer.json"))
                tk.no_padding()  # the file pins padding/truncation to 128; we pad per batch
                tk.enable_truncation(max_length=self.window)
                self._fast = tk
                specials = self._special_tokens_map(path)
                decoder = tk.get_added_tokens_decoder()
                self.special_ids = frozenset(i for i, t in decoder.items() if t.special)
                self.pad_id = self._id(specials.get("pad_token"), 0)
                self.unk_id: int | None = self._id(
                    specials.get("unk_token") or getattr(tk.model, "unk_token", None), None
                )
            else:
                _offline_env()
                from transformers import AutoTokenizer

                self._hf = AutoTokenizer.from_pretrained(str(path), local_files_only=True)  # nosec B615 - local folder only
                self.special_ids = frozenset(self._hf.all_special_ids)
                self.pad_id = int(self._hf.pad_token_id) if self._hf.pad_token_id is not None else 0
                self.unk_id = self._hf.unk_token_id
        except Exception as exc:
            raise EncoderConfigError(f"encoder model path {path}: tokenizer failed to load ({exc})") from exc

    @staticmethod
    def _special_tokens_map(path: Path) -> dict[str, Any]:
        f = path / "special_tokens_map.json"
        try:
            raw = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
        except (OSError, ValueError):
            return {}
        out: dict[str, Any] = {}
        for k, v in raw.items() if isinstance(raw, dict) else ():
            out[k] = v.get("content") if isinstance(v, dict) else v
        return out

    def _id(self, token: Any, default: int | None) -> Any:
        tid = self._fast.token_to_id(token) if isinstance(token, str) else None
        return tid if tid is not None else default

    def __call__(self, texts: Sequence[str]) -> _Tokens:
        if self._fast is not None:
            encs = self._fast.encode_batch(list(texts))
            ids = [list(e.ids) for e in encs]
            truncated = [len(e.overflowing) > 0 for e in encs]  # the cut-off tail is kept here
        else:
            enc = self._hf(
                list(texts),
                truncation=True,
                max_length=self.window,
                padding=False,
                return_attention_mask=False,
                return_token_type_ids=False,
            )
            ids = [list(x) for x in enc["input_ids"]]
            full = self._hf(list(texts), truncation=False)["input_ids"]
            truncated = [len(f) > self.window for f in full]
        unk_fraction = []
        for row in ids:
            words = [t for t in row if t not in self.special_ids or t == self.unk_id]
            unk_fraction.append(sum(t == self.unk_id for t in words) / len(words) if words else 0.0)
        return _Tokens(ids=ids, truncated=truncated, unk_fraction=unk_fraction)


def _pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Right-pad to the longest row; single-segment input so token types are all 0."""
    width = max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return ids, mask, np.zeros_like(ids)


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over real tokens only, then L2 normalise (float32)."""
    m = mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden.astype(np.float32, copy=False), m)
    v = summed / np.maximum(m.sum(axis=1, keepdims=True), 1e-9)
    out: np.ndarray = (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return out

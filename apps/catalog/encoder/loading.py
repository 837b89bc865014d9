"""Loading a model once per process: resolving ``int8``, building the backend, the loaded-model cache."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from apps.catalog.encoder.model_path import BEST_INT8, EncoderConfigError, ModelInfo
from apps.catalog.encoder.onnx_backend import (
    _export_onnx,
    _onnx_available,
    _onnx_files,
    _ort_forward,
    _quantize_onnx,
)
from apps.catalog.encoder.tokenizer import _Tokenizer
from apps.catalog.encoder.torch_backend import (
    _Forward,
    _load_torch_model,
    _quantize_torch,
    _set_torch_threads,
    _torch_forward,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Loaded:
    info: ModelInfo
    precision: str  # resolved: never plain "int8"
    tokenizer: _Tokenizer
    forward: _Forward


_CACHE: dict[tuple[str, str], _Loaded] = {}
_CACHE_LOCK = threading.Lock()


def _load(info: ModelInfo, precision: str, threads: int, cache_dir: Path) -> _Loaded:
    tokenizer = _Tokenizer(info)

    resolved = precision
    if precision == "int8":
        int8_onnx = _onnx_files(info, cache_dir)[1]
        if int8_onnx.is_file() or _onnx_available():
            resolved = BEST_INT8
        else:
            log.warning(
                "precision int8: package 'onnx' missing and no cached %s; using int8-torch "
                "(slower, cosine to fp32 about 0.97)",
                int8_onnx,
            )
            resolved = "int8-torch"

    if resolved == BEST_INT8 and precision == "int8":
        try:
            return _Loaded(info, resolved, tokenizer, _build(info, resolved, tokenizer, threads, cache_dir))
        except EncoderConfigError:
            raise
        except Exception as exc:  # an export that fails or disagrees with torch must not take search down
            log.warning("precision int8: %s failed (%s); using int8-torch", resolved, exc)
            resolved = "int8-torch"
    return _Loaded(info, resolved, tokenizer, _build(info, resolved, tokenizer, threads, cache_dir))


def _build(info: ModelInfo, resolved: str, tokenizer: _Tokenizer, threads: int, cache_dir: Path) -> _Forward:
    """The forward function of one concrete implementation (exporting ONNX if needed)."""
    if resolved in ("fp32", "int8-torch"):
        _set_torch_threads(threads)
        model = _load_torch_model(info)
        return _torch_forward(_quantize_torch(model) if resolved == "int8-torch" else model)
    fp32_onnx, int8_onnx = _onnx_files(info, cache_dir)
    target = fp32_onnx if resolved == "fp32-onnx" else int8_onnx
    if not target.is_file():
        if not fp32_onnx.is_file():
            if not _onnx_available():
                raise EncoderConfigError(
                    f"precision {resolved} needs the 'onnx' package to export "
                    f"{info.path} (or a cached {target})"
                )
            log.info("exporting %s to %s", info.path, fp32_onnx)
            _set_torch_threads(threads)
            _export_onnx(info, tokenizer, fp32_onnx)
        if target == int8_onnx:
            log.info("quantising %s to %s", fp32_onnx, int8_onnx)
            _quantize_onnx(fp32_onnx, int8_onnx)
    return _ort_forward(target, threads)

"""Item/query text encoder: sentence vectors from all-MiniLM-L6-v2, without Django (no heavy import here).
Design notes, precisions and measured speed/quality: docs/catalog.md ("Encoder implementation").
Modules: model_path, tokenizer, torch_backend, onnx_backend, loading, text_encoder, registry.
"""

from apps.catalog.encoder.model_path import (
    BEST_INT8,
    PRECISIONS,
    EncoderConfigError,
    ModelInfo,
    default_model_path,
    validate_model_path,
)
from apps.catalog.encoder.registry import clear_model_cache, get_encoder
from apps.catalog.encoder.text_encoder import EncodeResult, TextEncoder

__all__ = [
    "BEST_INT8",
    "PRECISIONS",
    "EncodeResult",
    "EncoderConfigError",
    "ModelInfo",
    "TextEncoder",
    "clear_model_cache",
    "default_model_path",
    "get_encoder",
    "validate_model_path",
]

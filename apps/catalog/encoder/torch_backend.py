"""The torch implementations: ``fp32`` (the reference) and ``int8-torch`` (dynamic int8 on ``nn.Linear``).

torch and transformers are imported only inside functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from apps.catalog.encoder.model_path import EncoderConfigError, ModelInfo, _offline_env

# A backend maps padded (ids, mask, type_ids) int64 arrays to last hidden states (b, s, d).
_Forward = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _load_torch_model(info: ModelInfo, attn: str | None = None) -> Any:
    _offline_env()
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"local_files_only": True}
    if attn:
        kwargs["attn_implementation"] = attn
    try:
        model = AutoModel.from_pretrained(str(info.path), **kwargs)  # nosec B615 - a local folder, local_files_only
    except Exception as exc:
        raise EncoderConfigError(f"encoder model path {info.path}: weights failed to load ({exc})") from exc
    return model.eval()


def _torch_forward(model: Any) -> _Forward:
    import torch

    def forward(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(
                input_ids=torch.from_numpy(ids),
                attention_mask=torch.from_numpy(mask),
                token_type_ids=torch.from_numpy(types),
            )
        return np.asarray(out.last_hidden_state.float().numpy())

    return forward


def _quantize_torch(model: Any) -> Any:
    """Dynamic int8 on every ``nn.Linear``; per-channel weights (cos 0.974 vs 0.94 per-tensor)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao points at torchao, which is not a dependency
        warnings.simplefilter("ignore")
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8
        )


def _set_torch_threads(threads: int) -> None:
    """Process-wide in torch, so only touched when it differs."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)

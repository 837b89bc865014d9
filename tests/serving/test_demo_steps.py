"""The demo's steps end to end on a 30-movie MovieLens subset, with the real Celery worker:
import and encoding, ratings as events, a DP training run, its evaluation, a serving check; a
second run skips what is done and spends no more budget."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest

from tests.serving.conftest import MOVIELENS
from tests.support import make_tenant

pytestmark = [pytest.mark.usefixtures("live_db"), pytest.mark.worker, pytest.mark.slow]

N_MOVIES = 30
N_USERS = 40


def tiny_movielens(target: Path) -> tuple[set[str], set[str]]:
    """The first 30 movies, their tags, and the ratings of the first 40 users who rated any of them."""
    target.mkdir(parents=True, exist_ok=True)
    with (MOVIELENS / "movies.csv").open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        movies = [row for _, row in zip(range(N_MOVIES), reader, strict=False)]
    ids = {row["movieId"] for row in movies}
    _write(target / "movies.csv", ["movieId", "title", "genres"], movies)
    with (MOVIELENS / "tags.csv").open(encoding="utf-8", newline="") as handle:
        tags = [row for row in csv.DictReader(handle) if row["movieId"] in ids]
    _write(target / "tags.csv", ["userId", "movieId", "tag", "timestamp"], tags)
    users: list[str] = []
    ratings = []
    with (MOVIELENS / "ratings.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["movieId"] not in ids:
                continue
            if row["userId"] not in users:
                if len(users) >= N_USERS:
                    continue
                users.append(row["userId"])
            ratings.append(row)
    _write(target / "ratings.csv", ["userId", "movieId", "rating", "timestamp"], ratings)
    return ids, set(users)


def _write(path: Path, fields: list[str], rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def test_the_demo_steps_load_train_evaluate_and_serve_and_a_rerun_skips_what_is_done(
    api, tmp_path, celery_worker_proc, settings, monkeypatch
):
    from apps.core.demo_steps import curl_examples, run_extra_steps
    from apps.modeling.selectors import active_model_info, privacy_budget

    monkeypatch.setitem(settings.SOTTO, "MODELING_POINTER_TTL_S", 0.0)
    movies, users = tiny_movielens(tmp_path / "tiny")
    persona = make_tenant("demo")
    tenant = persona.tenant

    # Given a fresh tenant, when the demo steps run, then every step reports and a model goes live
    steps: list[str] = []
    out = io.StringIO()
    run_extra_steps(tenant=tenant, step=steps.append, stdout=out, dataset=tmp_path / "tiny")
    text = "\n".join(steps) + out.getvalue()
    assert steps[0].startswith(f"Catalogue: tiny ({N_MOVIES} movies, ratings of {N_USERS} users)"), steps
    assert any("Training run" in s and "succeeded" in s for s in steps), text + celery_worker_proc.log_path.read_text()[-3000:]
    assert any(s.startswith("Evaluation: model version 1") for s in steps), text
    assert "Recall@20" in out.getvalue() and "DP popularity" in out.getvalue()
    assert "recommendations (strategy personal, model version 1)" in out.getvalue(), text
    info = active_model_info(tenant_id=tenant.id)
    assert info is not None and info["version"] == 1

    # and the API serves the trained model to a MovieLens user of the subset
    user = sorted(users)[0]
    body = api.get("/api/v1/recommendations", {"user": user, "k": 5}, **persona.auth).json()
    assert body["strategy"] == "personal" and body["model_version"] == 1
    assert body["items"] and {i["id"] for i in body["items"]} <= movies

    # When the steps run again, then the import and the training are skipped: no second charge
    spent = privacy_budget(tenant_id=tenant.id)["epsilon_spent"]
    again: list[str] = []
    run_extra_steps(tenant=tenant, step=again.append, stdout=io.StringIO(), dataset=tmp_path / "tiny")
    assert "already loaded" in again[0], again
    assert any("already serves" in s for s in again), again
    assert privacy_budget(tenant_id=tenant.id)["epsilon_spent"] == spent == pytest.approx(4.0)

    lines = curl_examples(base="http://127.0.0.1:8000", key="sotto_abc_def")
    for path in ("/api/v1/recommendations?user=", "/api/v1/search", "/api/v1/events"):
        assert any(path in line and "Bearer sotto_abc_def" in line for line in lines), path

"""The demo's steps end to end on a 30-movie MovieLens subset, with the real Celery worker:
import and encoding, ratings as events, a DP training run, its evaluation, a serving check; a
second run skips what is done and spends no more budget. Both sides of the activation gate: a run
whose model goes live, and one the gate keeps inactive."""

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
# noise seeds of the demo's run on this subset: one whose model passes the activation gate, one whose does not
LIVE_SEED = 11
REJECTED_SEED = 1


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


def _demo(tmp_path: Path, seed: int) -> tuple[Any, set[str], set[str], list[str], str]:
    """A fresh tenant with seeded DP noise, the demo steps run once: (persona, movies, users, steps, output)."""
    from apps.demo.steps import run_extra_steps

    movies, users = tiny_movielens(tmp_path / "tiny")
    persona = make_tenant("demo")
    persona.tenant.settings = {"modeling": {"seed": seed}}
    persona.tenant.save(update_fields=["settings"])
    steps: list[str] = []
    out = io.StringIO()
    run_extra_steps(tenant=persona.tenant, step=steps.append, stdout=out, dataset=tmp_path / "tiny")
    assert steps[0].startswith(f"Catalogue: tiny ({N_MOVIES} movies, ratings of {N_USERS} users)"), steps
    assert "Recall@20" in out.getvalue() and "DP popularity" in out.getvalue()
    return persona, movies, users, steps, "\n".join(steps) + out.getvalue()


def _rerun_spends_nothing(tenant: Any, tmp_path: Path, skipped: str) -> None:
    """The steps again: the import and the training are skipped, no second run, no second charge."""
    from apps.demo.steps import run_extra_steps
    from apps.modeling.selectors import privacy_budget, training_runs_for_tenant

    spent = privacy_budget(tenant_id=tenant.id)["epsilon_spent"]
    again: list[str] = []
    run_extra_steps(tenant=tenant, step=again.append, stdout=io.StringIO(), dataset=tmp_path / "tiny")
    assert "already loaded" in again[0], again
    assert any(skipped in s for s in again), again
    assert len(training_runs_for_tenant(tenant_id=tenant.id)) == 1
    assert privacy_budget(tenant_id=tenant.id)["epsilon_spent"] == spent == pytest.approx(4.0)


def test_the_demo_steps_load_train_evaluate_and_serve_and_a_rerun_skips_what_is_done(
    api, tmp_path, celery_worker_proc, settings
):
    from apps.demo.steps import curl_examples
    from apps.modeling.selectors import active_model_info

    settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 0.0}
    # Given a fresh tenant whose DP noise is seeded so that the model beats DP popularity on its holdout
    # (at 40 users it does for some noise draws and not others: the gate decides, see the next test),
    # when the demo steps run, then every step reports and a model goes live
    persona, movies, users, steps, text = _demo(tmp_path, LIVE_SEED)
    tenant = persona.tenant
    assert any("Training run" in s and "succeeded" in s for s in steps), (
        text + celery_worker_proc.log_path.read_text()[-3000:]
    )
    assert any(s.startswith("Evaluation: model version 1 (live)") for s in steps), text
    assert "recommendations (strategy personal, model version 1)" in text, text
    info = active_model_info(tenant_id=tenant.id)
    assert info is not None and info["version"] == 1

    # and the API serves the trained model to a MovieLens user of the subset
    user = sorted(users)[0]
    body = api.get("/api/v1/recommendations", {"user": user, "k": 5}, **persona.auth).json()
    assert body["strategy"] == "personal" and body["model_version"] == 1
    assert body["items"] and {i["id"] for i in body["items"]} <= movies

    # When the steps run again, then the import and the training are skipped: no second charge
    _rerun_spends_nothing(tenant, tmp_path, "already serves")

    lines = curl_examples(base="http://127.0.0.1:8000", key="sotto_abc_def")
    for path in ("/api/v1/recommendations?user=", "/api/v1/search", "/api/v1/events"):
        assert any(path in line and "Bearer sotto_abc_def" in line for line in lines), path


def test_the_demo_says_when_the_gate_keeps_the_model_inactive_and_a_rerun_does_not_charge_again(
    api, tmp_path, celery_worker_proc, settings
):
    from apps.modeling.selectors import active_model_info, training_runs_for_tenant

    settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 0.0}
    # Given a fresh tenant whose seeded DP noise leaves the model below DP popularity on its holdout,
    # when the demo steps run, then every step reports and the activation gate keeps the model inactive
    persona, movies, users, steps, text = _demo(tmp_path, REJECTED_SEED)
    tenant = persona.tenant
    assert any(s.startswith("What ran: gaussian popularity") for s in steps), text
    kept = [s for s in steps if "kept inactive" in s]
    assert kept and "does not beat DP popularity" in kept[0], (
        text + celery_worker_proc.log_path.read_text()[-3000:]
    )
    assert any(s.startswith("Evaluation: model version 1 (rejected)") for s in steps), text
    assert "recommendations (strategy content)" in text, text
    assert active_model_info(tenant_id=tenant.id) is None
    runs = training_runs_for_tenant(tenant_id=tenant.id)
    assert [r["status"] for r in runs] == ["rejected"] and runs[0]["gate"]["passed"] is False

    # and the API serves the content strategy to a MovieLens user of the subset, not the rejected model
    user = sorted(users)[0]
    body = api.get("/api/v1/recommendations", {"user": user, "k": 5}, **persona.auth).json()
    assert body["strategy"] == "content" and body["model_version"] is None
    assert body["items"] and {i["id"] for i in body["items"]} <= movies

    # When the steps run again, then the training is not repeated: no second charge
    _rerun_spends_nothing(tenant, tmp_path, "already trained and was kept inactive")

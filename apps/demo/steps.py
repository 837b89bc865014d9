"""The demo's data steps: catalogue and ratings, encoding, a DP training run, its evaluation, a serving check,
and, once the web server runs, the same calls over HTTP through the Python client (``client_check_step``).

Everything goes through the apps' own services, as the API would: the catalogue import and the
ratings (as ``rating`` events through ``events_ingest``) are ``import_movielens``; encoding is the
Celery worker the demo started; training is ``training_run_start`` (charged to the privacy ledger,
queued to the same worker). Re-running is safe: a tenant that already holds the dataset skips the
import, and one that already serves a trained model, or whose run the activation gate kept inactive,
skips training (and spends no budget).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.core.conf import sotto
from apps.tenancy.models import Tenant

DEMO_EPSILON = 4.0
ENCODING_TIMEOUT_S = 1800.0
TRAINING_TIMEOUT_S = 1800.0
FINISHED = ("succeeded", "rejected", "failed")


def default_dataset() -> Path:
    return Path(settings.BASE_DIR) / "data" / "ml-latest-small"


def run_extra_steps(
    *, tenant: Tenant, step: Callable[[str], None], stdout: Any, dataset: Path | None = None
) -> None:
    """Load data and train; each step says what it does. ``dataset``: a MovieLens-format folder."""
    directory = Path(dataset) if dataset is not None else default_dataset()
    catalogue_step(tenant=tenant, directory=directory, step=step, stdout=stdout)
    run = training_step(tenant=tenant, step=step, stdout=stdout)
    evaluation_step(tenant=tenant, run=run, step=step, stdout=stdout)
    serving_check_step(tenant=tenant, directory=directory, step=step, stdout=stdout)


# --- 1. catalogue, encoding, ratings -----------------------------------------------------------------


def _dataset_size(directory: Path) -> tuple[int, int]:
    """(movies, users with ratings) in a MovieLens folder."""
    with (directory / "movies.csv").open(encoding="utf-8", newline="") as handle:
        movies = sum(1 for _ in csv.DictReader(handle))
    users: set[str] = set()
    ratings = directory / "ratings.csv"
    if ratings.is_file():
        with ratings.open(encoding="utf-8", newline="") as handle:
            users = {row["userId"] for row in csv.DictReader(handle)}
    return movies, len(users)


def _loaded(tenant_id: int, movies: int, users: int) -> bool:
    from apps.catalog.selectors import catalog_status
    from apps.core.tenant_db import tenant_context
    from apps.modeling.tenant_data import trainable_users

    counts = catalog_status(tenant_id=tenant_id)
    if counts["items"] < movies or counts["pending"]:
        return False
    with tenant_context(tenant_id):
        return trainable_users(tenant_id) >= users


def catalogue_step(*, tenant: Tenant, directory: Path, step: Callable[[str], None], stdout: Any) -> None:
    from django.core.management import call_command

    from apps.catalog.selectors import catalog_status

    movies, users = _dataset_size(directory)
    if _loaded(tenant.id, movies, users):
        counts = catalog_status(tenant_id=tenant.id)
        step(
            f"Catalogue: already loaded ({counts['items']} items, {counts['ready']} encoded, ratings of "
            f"{users} users): import skipped"
        )
        return
    step(
        f"Catalogue: {directory.name} ({movies} movies, ratings of {users} users) through the catalogue and "
        f"events services; the worker encodes every movie with BERT "
        f"({sotto().encoder_precision}), progress below"
    )
    started = time.monotonic()
    call_command(
        "import_movielens",
        str(directory),
        "--tenant",
        tenant.slug,
        "--wait",
        "--wait-timeout",
        str(ENCODING_TIMEOUT_S),
        stdout=stdout,
    )
    step(f"Catalogue loaded in {time.monotonic() - started:.0f} s")


# --- 2. DP training ----------------------------------------------------------------------------------


def _active_version(tenant_id: int) -> int | None:
    from apps.modeling.selectors import active_model_info

    info = active_model_info(tenant_id=tenant_id)
    return int(info["version"]) if info else None


def training_step(*, tenant: Tenant, step: Callable[[str], None], stdout: Any) -> dict[str, Any] | None:
    """A DP training run with ε = 4 through the modeling service, waited for with a progress bar."""
    from apps.core.errors import DomainError
    from apps.modeling.selectors import training_run_get, training_runs_for_tenant
    from apps.modeling.services import training_run_start

    version = _active_version(tenant.id)
    if version is not None:
        step(f"Training: model version {version} already serves this tenant; no new run (no budget spent)")
        runs = [r for r in training_runs_for_tenant(tenant_id=tenant.id) if r["model_version"] == version]
        return runs[0] if runs else None
    earlier = next(
        (
            r
            for r in training_runs_for_tenant(tenant_id=tenant.id)
            if r["status"] in ("queued", "running", "rejected")
        ),
        None,
    )
    if earlier is not None and earlier["status"] == "rejected":
        step(
            f"Training: run {earlier['id']} already trained and was kept inactive ({earlier.get('error')}); "
            "no new run (no budget spent)"
        )
        return earlier
    if earlier is not None:
        step(f"Training: run {earlier['id']} is already {earlier['status']}; waiting for it (no new charge)")
        run = earlier
    else:
        step(
            f"Training: a user-level DP run with epsilon = {DEMO_EPSILON:g} on the worker; the budget ledger "
            "is charged first"
        )
        try:
            run = training_run_start(tenant_id=tenant.id, epsilon=DEMO_EPSILON, actor="demo")
        except DomainError as exc:
            step(f"Training refused: {exc.message} (recommendations use the content strategy meanwhile)")
            return None
        step(f"Training run {run['id']} plans: {run['mechanism']}")
    run = _wait_for_run(tenant.id, int(run["id"]), training_run_get, stdout)
    if run.get("release"):
        step(f"What ran: {run['mechanism']}; accountant {run['release'].get('accountant')}")
    if run["status"] == "rejected":
        step(
            f"Training run {run['id']} was trained and charged but kept inactive: {run.get('error')} "
            "(the activation gate; recommendations use the content strategy meanwhile)"
        )
        return run
    if run["status"] != "succeeded":
        step(
            f"Training run {run['id']} ended {run['status']}: {run.get('error') or 'timed out'} "
            "(recommendations use the content strategy meanwhile)"
        )
        return run
    step(
        f"Training run {run['id']} succeeded: model version {run['model_version']} is live "
        f"(epsilon spent {run['epsilon_spent']:.2f} of {run['epsilon']:g}, {run['users']} users)"
    )
    return run


def _wait_for_run(
    tenant_id: int, run_id: int, get: Callable[..., dict[str, Any]], stdout: Any
) -> dict[str, Any]:
    from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no stubs

    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    run = get(tenant_id=tenant_id, run_id=run_id)
    # the run's own progress (per release step and DP-SGD epoch), so a run without epochs moves too
    with tqdm(total=100, desc="training", unit="%", file=stdout) as bar:
        while True:
            bar.n = round(100 * float(run.get("progress") or 0.0))
            loss = run.get("loss")
            bar.set_postfix(
                status=run["status"],
                stage=run.get("stage") or "-",
                loss=f"{loss:.3f}" if loss is not None else "-",
                refresh=False,
            )
            bar.refresh()
            if run["status"] in FINISHED or time.monotonic() > deadline:
                return run
            time.sleep(1.0)
            run = get(tenant_id=tenant_id, run_id=run_id)


# --- 3. evaluation -----------------------------------------------------------------------------------


def evaluation_step(
    *, tenant: Tenant, run: dict[str, Any] | None, step: Callable[[str], None], stdout: Any
) -> None:
    """The live model's holdout metrics beside the DP popularity ranking on the same holdout."""
    from apps.modeling.selectors import latest_evaluation

    evaluation = latest_evaluation(tenant.id)
    if evaluation is None or "recall@20" not in evaluation["metrics"]:
        step("Evaluation: no trained model with holdout metrics yet")
        return
    m = evaluation["metrics"]
    eps = f"{run['epsilon']:g}" if run else "?"
    state = "live" if evaluation["status"] == "active" else evaluation["status"]
    step(
        f"Evaluation: model version {evaluation['model_version']} ({state}) on its holdout "
        f"({m.get('protocol', '')})"
    )
    design = (run or {}).get("design") or "DP"
    rows = [
        ("ranking", "Recall@20", "NDCG@10"),
        (f"Sotto {design} model, DP epsilon={eps}", f"{m['recall@20']:.4f}", f"{m['ndcg@10']:.4f}"),
        (
            "DP popularity (cold-start fallback)",
            f"{m['dp_popularity_recall@20']:.4f}",
            f"{m['dp_popularity_ndcg@10']:.4f}",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    stdout.write(f"    {rows[0][0]:<{width}}  {rows[0][1]:>9}  {rows[0][2]:>8}\n")
    for name, recall, ndcg in rows[1:]:
        stdout.write(f"    {name:<{width}}  {recall:>9}  {ndcg:>8}\n")
    stdout.write(
        f"    ({m.get('users_evaluated', '?')} users; the full P1 comparison across epsilons is "
        "`manage.py evaluate`, docs/results/p1-experiments.md)\n"
    )


# --- 4. serving check --------------------------------------------------------------------------------


def serving_check_step(*, tenant: Tenant, directory: Path, step: Callable[[str], None], stdout: Any) -> None:
    """One recommendation and one search in process, through the same selectors the API calls."""
    from apps.catalog.selectors import item_get
    from apps.core.errors import DomainError
    from apps.serving.selectors import recommendations_for_user, search_items

    user = first_user(directory)
    step(
        f"Serving check: recommendations for MovieLens user {user} and a search, as the API will answer them"
    )
    try:
        recs = recommendations_for_user(tenant_id=tenant.id, user_ref=user, k=5)
        found = search_items(tenant_id=tenant.id, query="toy story", k=3, user_ref=user)
    except DomainError as exc:
        stdout.write(f"    serving check failed: {exc.message}\n")
        return

    def title(external_id: str) -> str:
        return str(item_get(tenant_id=tenant.id, external_id=external_id).title)

    version = f", model version {recs.model_version}" if recs.model_version is not None else ""
    stdout.write(f"    recommendations (strategy {recs.strategy}{version}):\n")
    for item in recs.items:
        stdout.write(f"      {item['score']:.3f}  {title(item['id'])}\n")
    if recs.note:
        stdout.write(f"      note: {recs.note}\n")
    stdout.write("    search 'toy story' (personalised):\n")
    for item in found.items:
        stdout.write(f"      {item['score']:.3f}  {title(item['id'])}\n")


def first_user(directory: Path) -> str:
    """The dataset's first rating user (the one the serving checks ask about)."""
    ratings = directory / "ratings.csv"
    if ratings.is_file():
        with ratings.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                return str(row["userId"])
    return "1"


def first_movie(directory: Path) -> str:
    """The dataset's first movie id (Toy Story, 1 in MovieLens)."""
    with (directory / "movies.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            return str(row["movieId"])
    return "1"


# --- 5. over HTTP, with the Python client --------------------------------------------------------


def client_check_step(
    *, base: str, key: str, directory: Path, step: Callable[[str], None], stdout: Any
) -> bool:
    """The running web server through ``sotto_client`` (clients/python), as a client app would call it.

    Returns whether every call answered; a failure is printed, never raised: the demo keeps
    serving, and the web log says more.
    """
    try:
        from sotto_client import SottoClient, SottoError
    except ImportError:
        step(
            "Python client not installed (`make install` or `pip install -e clients/python`): HTTP check skipped"
        )
        return False
    user, movie = first_user(directory), first_movie(directory)
    step(f"Over HTTP with the Python client (sotto_client, clients/python) at {base}")
    client = SottoClient(base, key, timeout=60.0, max_retries=3)
    try:
        status = client.catalog_status()
        recs = client.recommendations(user, k=3)
        similar = client.similar_items(movie, k=3)
    except SottoError as exc:
        stdout.write(f"    the API answered {exc} (request id {exc.request_id}); see the web log\n")
        return False
    rows = [
        ("client.catalog_status()", f"{status['items']} items, {status['ready']} encoded"),
        (
            f"client.recommendations({user!r}, k=3)",
            f"{recs['strategy']}: " + ", ".join(item["id"] for item in recs["items"]),
        ),
        (f"client.similar_items({movie!r}, k=3)", ", ".join(item["id"] for item in similar["items"])),
    ]
    width = max(len(call) for call, _ in rows)
    for call, answer in rows:
        stdout.write(f"    {call:<{width}}  -> {answer}\n")
    return True


# --- the credentials block ---------------------------------------------------------------------------


def python_examples(*, base: str, key: str) -> list[str]:
    """The same calls from Python (``sotto_client``, installed by ``make install``)."""
    return [
        "from sotto_client import SottoClient",
        f"client = SottoClient({base!r}, {key!r})",
        "client.recommendations('1', k=10)",
        "client.search('space adventure', k=5)",
        "client.events_ingest([{'user': '1', 'item': '2571', 'type': 'rating', 'value': 5}])",
    ]


def curl_examples(*, base: str, key: str) -> list[str]:
    """Working curl lines for the main endpoints (docs/api.md has one for every endpoint)."""
    auth = f'-H "Authorization: Bearer {key}"'
    return [
        f"curl -s '{base}/api/v1/recommendations?user=1&k=10' {auth}",
        f"curl -s '{base}/api/v1/recommendations?user=1&k=10&category=Comedy&diversity=0.3' {auth}",
        f"curl -s '{base}/api/v1/recommendations?user=new-visitor' {auth}   # cold start: DP popularity",
        f"curl -s '{base}/api/v1/search?q=space+adventure&k=5' {auth}",
        f"curl -s '{base}/api/v1/search?q=toy+story&user=1&k=5' {auth}   # personalised",
        f"curl -s -G '{base}/api/v1/search' --data-urlencode 'q=Toy Story 玩具总动员' {auth}   # mixed query",
        f"curl -s -X POST {base}/api/v1/events {auth} -H 'Content-Type: application/json' "
        '-d \'{"events":[{"event_id":"demo-1","user":"1","item":"2571","type":"rating","value":5}]}\'',
        f"curl -s '{base}/api/v1/items/1/similar?k=5' {auth}   # Toy Story (1995)",
        f"curl -s {base}/api/v1/catalog/status {auth}",
        f"curl -s {base}/api/v1/privacy-budget {auth}",
    ]

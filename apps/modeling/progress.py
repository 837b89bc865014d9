"""The stages of a training run and the progress fraction each one stands for (no Django, no torch).

The worker (``training``) stores the human-readable stage on the run row (``TrainingRun.stage``)
at every stage boundary, with ``epoch``/``epochs`` during DP-SGD; the API and the admin
(``selectors._progress``) turn (status, stage, epoch, epochs) back into a fraction in [0, 1] with
:func:`run_progress`. Fixed weights, the same for both designs, so a "factors" run (no epochs) moves
too: data 5 %, DP releases 60 % (popularity 5 %, then the item-item Gram or the DP-SGD epochs
55 %, the epochs subdividing it), holdout evaluation 15 %, materialising + HNSW index 15 %,
switch 5 %. The stages come in this order, so the fraction never goes down during a run; a
succeeded or rejected run is 1.0, a failed one stays where it stopped.
"""

from __future__ import annotations

QUEUED = "queued"
LOADING = "loading data"
POPULARITY = "DP popularity release"
GRAM = "DP item-item Gram"
SGD_PREFIX = "DP-SGD epoch"
EVALUATION = "holdout evaluation"
MATERIALISING = "materialising served vectors"
INDEXING = "building HNSW index"
SWITCHING = "switching"
DONE = "done"
REJECTED = "kept inactive by the gate"

# where each stage starts (fraction of the run); DP-SGD spans [SGD_START, SGD_END) by epochs
SGD_START, SGD_END = 0.10, 0.65
STAGE_START: dict[str, float] = {
    QUEUED: 0.0,
    LOADING: 0.0,
    POPULARITY: 0.05,
    GRAM: SGD_START,
    EVALUATION: SGD_END,
    MATERIALISING: 0.80,
    INDEXING: 0.90,
    SWITCHING: 0.95,
    DONE: 1.0,
    REJECTED: 1.0,
}

# the steps ``training.train_tenant`` and the pure ML core (``ml.tower``, ``ml.dp_factors``) report
# through their ``on_stage`` callback; "dp-sgd" becomes :func:`sgd_stage` (0 epochs done)
STAGE_KEYS = {"popularity": POPULARITY, "gram": GRAM, "evaluation": EVALUATION}


def sgd_stage(epoch: int, epochs: int) -> str:
    """The stage while DP-SGD epoch ``epoch + 1`` of ``epochs`` runs (``epoch`` = epochs done);
    ``DP-SGD epoch N/N`` once the last one is done."""
    return f"{SGD_PREFIX} {min(epoch + 1, epochs)}/{epochs}"


def stage_progress(stage: str, epoch: int = 0, epochs: int = 0) -> float:
    """The fraction of the run done when it is in ``stage`` (unknown or empty: 0)."""
    if stage.startswith(SGD_PREFIX):
        done = min(max(epoch, 0), epochs) / epochs if epochs > 0 else 0.0
        return round(SGD_START + (SGD_END - SGD_START) * done, 4)
    return STAGE_START.get(stage, 0.0)


def run_progress(status: str, stage: str, epoch: int = 0, epochs: int = 0) -> float:
    """The API's ``progress``: 1.0 once succeeded or rejected, else the stage's fraction."""
    if status in ("succeeded", "rejected"):
        return 1.0
    return stage_progress(stage, epoch, epochs)

"""The worker side of a training run: claim, train with DP, materialise, switch, clean up.

Only Celery workers on the ``train`` queue import this module's heavy parts (torch, Opacus are
imported inside functions). The run is already charged (``services.training_run_start``); this
code never charges again, whatever happens.

Steps of :func:`training_run_execute`:

1. **Claim** (one transaction): a ``queued`` run becomes ``running`` with a fresh claim token.
   A message (redelivered or duplicate) for a ``running`` run whose heartbeat is stale (its
   worker died) marks it failed ("worker lost") instead of training again; one whose worker still
   beats is ignored; ``succeeded``/``failed`` runs are left alone. So a run trains at most once
   and is charged once.
2. **Data** (one transaction, consistent snapshot): items with content vectors and their events.
   Per user, the newest ``holdout_fraction`` of events is held out (protocol P1) to measure the
   version's offline metrics; the model and its popularity release see only the rest.
3. **DP releases**, by the run's design (``ml.designs``; ``run.config["dp_design"]``, resolved from
   ``Tenant.settings["dp_design"]`` when the run was charged): ``"tower"`` (default from
   ``run_config.TOWER_MIN_USERS`` users): DP popularity + DP-SGD through Opacus of the public-feature
   two-tower (``ml.tower``), composed by the RDP accountant to the whole (ε, δ), with progress
   (epoch, loss) written to the run row; ``"factors"`` (smaller tenants): DP popularity + DP
   item-item Gram (GDP), the tower is its initialisation. A heartbeat thread keeps
   ``heartbeat_at`` fresh; the run's ``stage`` (``progress``: loading data, DP popularity release,
   DP item-item Gram or DP-SGD epoch k/N, holdout evaluation, materialising served vectors,
   building HNSW index, switching) is written at each boundary. Holdout metrics score the
   candidate, DP popularity and the active version on the same users (sparse, sampled to
   ``MODELING_EVAL_USERS``).
   **Gate** (``gate_decision``): the version goes live only if it beats DP popularity and is not
   below the active version (``MODELING_GATE_MARGIN``); otherwise it is stored ``rejected`` (no
   served vectors), the run ends ``rejected`` with the reason, and the active version keeps serving.
4. **Version**: weights + item universe + item extras as npz with SHA-256; the served
   item vectors go into a new (tenant, version) leaf partition, then its HNSW index is built.
5. **Switch** (one transaction): catch up items encoded meanwhile, point ``ActiveModel`` at the
   version, record the mechanism in the ledger, store the popularity release, mark the run
   succeeded. Serving sees the new weights and complete vectors together, or neither.
6. Drop served vectors of versions older than the previous one (kept for rollback).
A failure anywhere marks the run failed and drops the half-built leaf; the previous model keeps
serving.
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit, hooks
from apps.core.audit import AuditAction, SystemActor
from apps.core.conf import sotto
from apps.core.tenant_db import tenant_context
from apps.modeling import artifacts, progress, served, tenant_data
from apps.modeling.ledger import ledger_mechanism_record, run_charge, training_run_failed_record
from apps.modeling.ml import accounting
from apps.modeling.ml.config import ModelConfig
from apps.modeling.ml.designs import Released, release_design
from apps.modeling.ml.features import FeatureConfig, feature_config
from apps.modeling.models import (
    ActiveModel,
    ModelVersion,
    RunStatus,
    TrainingRun,
    VersionStatus,
)
from apps.modeling.popularity_release import popularity_release_store

log = logging.getLogger(__name__)


class RunAbandoned(RuntimeError):
    """The run is no longer ours (reaped as stale, or claimed by another delivery)."""


@dataclass(frozen=True)
class Claim:
    run_id: int
    token: str


# --- claim ---------------------------------------------------------------------------------------


def claim(*, tenant_id: int, run_id: int, redelivered: bool) -> Claim | None:
    """Take a queued run; settle a run whose earlier delivery died. None = nothing to do.

    A ``running`` run is judged by its heartbeat, not by the broker's redelivered flag: Redis
    redelivers a message still being worked on once its visibility timeout passes, and failing a
    live run would waste its budget. Silent for ``MODELING_STALE_AFTER_S`` → failed ("worker
    lost"); beating → this delivery is a duplicate and does nothing.
    """
    stale_s = sotto().modeling_stale_after_s
    with tenant_context(tenant_id):
        run = TrainingRun.objects.select_for_update().filter(tenant_id=tenant_id, pk=run_id).first()
        if run is None:
            log.warning("training run %s of tenant %s does not exist", run_id, tenant_id)
            return None
        now = timezone.now()
        if run.status == RunStatus.RUNNING:
            last = run.heartbeat_at or run.started_at
            if last is None or (now - last).total_seconds() > stale_s:
                run.status, run.error, run.finished_at = RunStatus.FAILED, "worker lost", now
                run.save(update_fields=["status", "error", "finished_at"])
                training_run_failed_record(
                    tenant_id=tenant_id,
                    run_id=run_id,
                    reason="worker lost",
                    actor=SystemActor.TASK_MODELING_TRAIN,
                )
                transaction.on_commit(lambda: discard_versions_of_run(tenant_id=tenant_id, run_id=run_id))
            else:
                log.info(
                    "training run %s is alive elsewhere (%s message ignored)",
                    run_id,
                    "redelivered" if redelivered else "duplicate",
                )
            return None
        if run.status != RunStatus.QUEUED:
            return None
        token = uuid.uuid4().hex
        run.status, run.claim_token, run.started_at, run.heartbeat_at = RunStatus.RUNNING, token, now, now
        run.attempts += 1
        run.worker = f"{socket.gethostname()}"[:255]
        run.stage = progress.LOADING
        run.save(
            update_fields=[
                "status",
                "claim_token",
                "started_at",
                "heartbeat_at",
                "attempts",
                "worker",
                "stage",
            ]
        )
    return Claim(run_id=run_id, token=token)


def _ours(tenant_id: int, claim_: Claim) -> Any:
    return TrainingRun.objects.filter(
        tenant_id=tenant_id, pk=claim_.run_id, claim_token=claim_.token, status=RunStatus.RUNNING
    )


def _beat(tenant_id: int, claim_: Claim, **fields: Any) -> None:
    with tenant_context(tenant_id):
        if not _ours(tenant_id, claim_).update(heartbeat_at=timezone.now(), **fields):
            raise RunAbandoned(f"training run {claim_.run_id} is no longer running here")


# DP-SGD epoch updates reach the run row at most this often (the last epoch always); stage
# boundaries are always written: a handful per run
PROGRESS_MIN_INTERVAL_S = 0.25


def _stage(tenant_id: int, claim_: Claim, stage: str, **fields: Any) -> None:
    """Record the stage the run is in (``progress``) with the heartbeat's one-row UPDATE."""
    _beat(tenant_id, claim_, stage=stage[:64], **fields)


class Heartbeat:
    """Background thread refreshing ``heartbeat_at`` while a long step (epoch, index build) runs."""

    def __init__(self, tenant_id: int, claim_: Claim, every_s: float) -> None:
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(
            target=self._loop,
            args=(tenant_id, claim_, every_s),
            daemon=True,
            name=f"heartbeat-run-{claim_.run_id}",
        )

    def _loop(self, tenant_id: int, claim_: Claim, every_s: float) -> None:
        try:
            while not self._stop.wait(every_s):
                try:
                    _beat(tenant_id, claim_)
                except RunAbandoned:
                    self.lost = True
                    return
                except Exception:  # a transient DB error must not kill the thread
                    log.exception("heartbeat of training run %s failed", claim_.run_id)
        finally:
            connection.close()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


# --- the run ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trained:
    """What the pure part of a run produced: the design's release, the version's universe, holdout metrics."""

    released: Released  # weights, extras, popularity release, the record of what ran, composed ε
    item_pks: np.ndarray
    content: np.ndarray
    features: FeatureConfig
    config: dict[str, Any]
    n_users: int
    delta: float
    epsilon_pop: float  # the popularity release alone, at ``delta`` (what its stored counts cost)
    metrics: dict[str, Any]

    @property
    def design(self) -> str:
        return str(self.released.record["design"])


@dataclass(frozen=True)
class Incumbent:
    """The active version, scored on the candidate's holdout so the gate compares like with like."""

    version: int
    weights: dict[str, np.ndarray]
    features: FeatureConfig
    extras: np.ndarray  # rows aligned to the candidate's item universe (``VersionArtifacts.extras_for``)


def _model_config(config: dict[str, Any]) -> ModelConfig:
    from dataclasses import fields

    known = {f.name for f in fields(ModelConfig)}
    values: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in known
    }
    return ModelConfig(**values)


def train_tenant(
    *,
    data: tenant_data.TenantData,
    config: dict[str, Any],
    epsilon: float,
    delta: float,
    seed: int,
    features: FeatureConfig,
    on_epoch: Callable[[int, int, float], None] | None = None,
    incumbent: Incumbent | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> Trained:
    """Pure part of a run (no database): holdout split, DP releases of ``config["dp_design"]``, metrics.

    The design (``ml.designs``: ``"tower"``, DP popularity + DP-SGD (Opacus) of the public-feature
    two-tower; ``"factors"``, DP popularity + DP item-item Gram, GDP) releases; it spends at most
    the whole (ε, δ) (checked against the composed accountant; ε = inf is the non-private model).
    Everything is sparse: no users x items array. Metrics compare the candidate with DP popularity
    and, when given, the ``incumbent`` on the same holdout users (``gate_decision`` reads them).
    ``on_stage`` is told each step as it begins ("popularity", "gram" or "dp-sgd", "evaluation";
    ``progress.STAGE_KEYS``), ``on_epoch`` (epoch, epochs, loss) after every DP-SGD epoch.
    """
    import torch

    from apps.modeling.ml.data import from_arrays, p1_split

    threads = sotto().modeling_torch_threads
    if threads > 0:
        torch.set_num_threads(threads)
    mc = _model_config(config)
    interactions = from_arrays(data.user, data.item, data.value, data.ts, item_ids=data.item_pks)
    holdout = float(config.get("holdout_fraction", 0.1))
    split = p1_split(interactions, holdout) if holdout > 0 else None
    train = split.train if split is not None else interactions
    design = release_design(str(config.get("dp_design", "tower")))
    released = design.release(
        train,
        data.content,
        mc,
        features,
        epsilon,
        delta,
        seed,
        on_stage=on_stage,
        on_epoch=on_epoch,
        max_processes=sotto().modeling_train_processes,
        threads=threads,
    )
    released = replace(released, record={**released.record, "users": interactions.n_users})
    eps_total = released.epsilon_spent
    if math.isfinite(epsilon) and eps_total > epsilon + 1e-9:  # never release more than was charged
        raise RuntimeError(f"composed ε {eps_total!r} exceeds the charged ε {epsilon!r}")
    sigma_pop = released.sigma_pop
    eps_pop = accounting.gaussian_epsilon(sigma_pop, delta) if sigma_pop > 0 else math.inf
    metrics: dict[str, Any] = {}
    if split is not None:
        if on_stage is not None:
            on_stage("evaluation")
        metrics = holdout_metrics(
            split=split,
            content=data.content,
            weights=released.weights,
            extras=released.extras,
            features=features,
            pop_counts=released.pop_counts,
            incumbent=incumbent,
            seed=seed,
            holdout=holdout,
        )
    return Trained(
        released=released,
        item_pks=data.item_pks,
        content=data.content,
        features=features,
        config=config,
        n_users=interactions.n_users,
        delta=delta,
        epsilon_pop=eps_pop,
        metrics=metrics,
    )


def holdout_metrics(
    *,
    split: Any,
    content: np.ndarray,
    weights: dict[str, np.ndarray],
    extras: np.ndarray,
    features: FeatureConfig,
    pop_counts: np.ndarray,
    incumbent: Incumbent | None,
    seed: int,
    holdout: float,
) -> dict[str, Any]:
    """Capped Recall@20 / NDCG@10 on the holdout of (a seeded sample of) users: candidate, DP popularity,
    incumbent. Users are scored in batches; the tower inputs come from the training part (sparse)."""
    from apps.modeling.ml import inference, sparse
    from apps.modeling.ml.metrics import evaluate_scores

    test = split.test_items
    users = np.flatnonzero(np.fromiter((len(t) > 0 for t in test), dtype=bool, count=len(test)))
    if len(users) == 0:
        return {}
    cap = sotto().modeling_eval_users
    if len(users) > cap:
        users = np.sort(np.random.default_rng([seed, 5]).choice(users, size=cap, replace=False))
    chosen = np.zeros(len(test), dtype=bool)
    chosen[users] = True
    test = [t if chosen[u] else t[:0] for u, t in enumerate(test)]
    seen = sparse.item_lists(split.train)
    h = sparse.histories(split.train)
    n_items = split.train.n_items

    def model_scores(w: dict[str, np.ndarray], ex: np.ndarray, cfg: FeatureConfig) -> dict[str, float]:
        x = sparse.tower_inputs(h, content, cfg)
        uvec = inference.user_vectors(w, x[users])
        row = np.full(len(test), -1, dtype=np.int64)
        row[users] = np.arange(len(users))
        ivec = inference.item_vectors(w, content, ex)
        return evaluate_scores(lambda u: uvec[row[u]] @ ivec.T, seen, test, n_items)

    cand = model_scores(weights, extras, features)
    pop = evaluate_scores(lambda u: np.tile(pop_counts, (len(u), 1)), seen, test, n_items)
    out: dict[str, Any] = {
        "protocol": f"last {holdout:.0%} of each user's events held out (P1); not differentially private",
        "recall@20": cand["recall@20"],
        "recall@20_capped": cand["recall@20_capped"],
        "ndcg@10": cand["ndcg@10"],
        "users_evaluated": int(cand["n_users"]),
        "dp_popularity_recall@20": pop["recall@20"],
        "dp_popularity_recall@20_capped": pop["recall@20_capped"],
        "dp_popularity_ndcg@10": pop["ndcg@10"],
    }
    if incumbent is not None:
        try:
            inc = model_scores(incumbent.weights, incumbent.extras, incumbent.features)
        except ValueError as exc:  # another feature layout than the states can give: not comparable
            out["active_error"] = str(exc)[:200]
        else:
            out.update(
                {
                    "active_version": incumbent.version,
                    "active_recall@20_capped": inc["recall@20_capped"],
                    "active_ndcg@10": inc["ndcg@10"],
                }
            )
    return out


def gate_decision(metrics: dict[str, Any], margin: float) -> dict[str, Any]:
    """Whether a version may go live: its holdout capped Recall@20 must beat DP popularity by more than
    ``margin`` (relative) and be at least ``(1 + margin)`` x the active version's on the same users.

    No holdout (``holdout_fraction`` 0) means nothing was measured: the version is not gated, and
    the decision says so.
    """
    if "recall@20_capped" not in metrics:
        return {
            "passed": True,
            "measured": False,
            "reason": "not measured (no holdout): activated ungated",
            "margin": margin,
        }
    cand = float(metrics["recall@20_capped"])
    pop = float(metrics["dp_popularity_recall@20_capped"])
    out: dict[str, Any] = {"measured": True, "margin": margin, "candidate": cand, "dp_popularity": pop}
    if not cand > pop * (1.0 + margin):
        return {
            **out,
            "passed": False,
            "reason": f"holdout capped Recall@20 {cand:.4f} does not beat DP popularity {pop:.4f}"
            + (f" by {margin:.0%}" if margin else ""),
        }
    if "active_recall@20_capped" in metrics:
        act = float(metrics["active_recall@20_capped"])
        out["active"] = act
        if cand < act * (1.0 + margin):
            return {
                **out,
                "passed": False,
                "reason": f"holdout capped Recall@20 {cand:.4f} is below the active version "
                f"v{metrics['active_version']}'s {act:.4f} on the same users",
            }
    return {
        **out,
        "passed": True,
        "reason": "beats DP popularity"
        + (" and the active version" if "active_recall@20_capped" in metrics else ""),
    }


def training_run_execute(*, tenant_id: int, run_id: int, redelivered: bool = False) -> str:
    """Run one charged training run end to end (see the module docstring); returns the outcome."""
    claim_ = claim(tenant_id=tenant_id, run_id=run_id, redelivered=redelivered)
    if claim_ is None:
        return "skipped"
    version: int | None = None
    previous_features: dict[str, Any] | None = None
    try:
        with Heartbeat(tenant_id, claim_, sotto().modeling_heartbeat_s) as beat:
            with tenant_context(tenant_id):
                run = TrainingRun.objects.get(tenant_id=tenant_id, pk=run_id)
                data = tenant_data.load(tenant_id)
                incumbent = _incumbent(tenant_id, data.item_pks)
            n_users = data.n_users
            if n_users == 0 or len(data.item_pks) == 0:
                raise ValueError("no events on encoded items to train on")
            delta = min(run.delta, 1.0 / n_users)  # never above the charge, and <= 1/N at training time

            written = [-math.inf]  # when progress last reached the row (time.monotonic)

            def on_stage(key: str) -> None:
                if beat.lost:
                    raise RunAbandoned(f"training run {run_id} was reaped")
                written[0] = time.monotonic()
                if key == "dp-sgd":
                    _stage(tenant_id, claim_, progress.sgd_stage(0, run.epochs), epoch=0, epochs=run.epochs)
                else:
                    _stage(tenant_id, claim_, progress.STAGE_KEYS[key])

            def on_epoch(epoch: int, epochs: int, loss: float) -> None:
                if beat.lost:
                    raise RunAbandoned(f"training run {run_id} was reaped")
                now = time.monotonic()
                if epoch < epochs and now - written[0] < PROGRESS_MIN_INTERVAL_S:
                    return  # fast epochs: a later one (the last one always) reports
                written[0] = now
                value = None if math.isnan(loss) else float(loss)
                _stage(
                    tenant_id,
                    claim_,
                    progress.sgd_stage(epoch, epochs),
                    epoch=epoch,
                    epochs=epochs,
                    loss=value,
                )

            _beat(tenant_id, claim_, n_users_trained=n_users)
            trained = train_tenant(
                data=data,
                config=run.config,
                epsilon=run.epsilon,
                delta=delta,
                seed=run.seed,
                features=feature_config(),
                on_epoch=on_epoch,
                incumbent=incumbent,
                on_stage=on_stage,
            )
            gate = gate_decision(trained.metrics, sotto().modeling_gate_margin)
            if gate["passed"]:
                version = _materialise(tenant_id, claim_, trained)
                _stage(tenant_id, claim_, progress.SWITCHING)
                previous_features = _switch(tenant_id, claim_, run_id, version, trained, gate)
            else:
                _reject(tenant_id, claim_, run_id, trained, gate)
    except RunAbandoned as exc:
        log.warning("%s", exc)
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
        return "abandoned"
    except Exception as exc:
        log.exception("training run %s of tenant %s failed", run_id, tenant_id)
        _fail(tenant_id, claim_, f"{type(exc).__name__}: {exc}")
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
        return "failed"
    if version is None:
        return "rejected"
    _retire_old_versions(tenant_id)
    if previous_features is not None and previous_features != artifacts.feature_config_to_json(
        trained.features
    ):
        rebuild_user_states(tenant_id)
    return "succeeded"


def _incumbent(tenant_id: int, item_pks: np.ndarray) -> Incumbent | None:
    """The active version's arrays, aligned to this run's items (caller's tenant-scoped transaction)."""
    pointer = ActiveModel.objects.filter(tenant_id=tenant_id).values_list("version", flat=True).first()
    if pointer is None:
        return None
    try:
        art = artifacts.load_artifacts(tenant_id, int(pointer))
    except (
        LookupError,
        ValueError,
        TypeError,
        artifacts.ArtifactCorrupt,
    ):  # corrupt, or an old feature layout
        log.warning("active version %s of tenant %s cannot be loaded for the gate", pointer, tenant_id)
        return None
    return Incumbent(
        version=int(pointer),
        weights=art.weights,
        features=art.model.feature_config,
        extras=art.extras_for(item_pks.tolist()),
    )


def _fail(tenant_id: int, claim_: Claim, reason: str) -> None:
    with tenant_context(tenant_id):
        if _ours(tenant_id, claim_).update(
            status=RunStatus.FAILED, error=reason[:1000], finished_at=timezone.now()
        ):
            training_run_failed_record(
                tenant_id=tenant_id,
                run_id=claim_.run_id,
                reason=reason,
                actor=SystemActor.TASK_MODELING_TRAIN,
            )


def _version_row(tenant_id: int, claim_: Claim, trained: Trained, status: str) -> ModelVersion:
    """A new version number (one allocator per tenant at a time) and its stored arrays."""
    blob, checksum = artifacts.pack(
        trained.released.weights, trained.item_pks, trained.released.extras, trained.released.cold_extras
    )
    dim = int(
        trained.content.shape[1]
        + trained.released.extras.shape[1]
        + int("item.radius" in trained.released.weights)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"modeling_version:{tenant_id}"]
        )
    last = (
        ModelVersion.objects.filter(tenant_id=tenant_id)
        .order_by("-version")
        .values_list("version", flat=True)
        .first()
    )
    return ModelVersion.objects.create(
        tenant_id=tenant_id,
        version=int(last or 0) + 1,
        run_id=claim_.run_id,
        status=status,
        blob=blob,
        checksum=checksum,
        feature_config=artifacts.feature_config_to_json(trained.features),
        model_config=trained.config,
        item_dim=dim,
        n_items=len(trained.item_pks),
        metrics=trained.metrics,
    )


def _materialise(tenant_id: int, claim_: Claim, trained: Trained) -> int:
    from apps.modeling.ml.inference import item_vectors

    _stage(tenant_id, claim_, progress.MATERIALISING)
    vectors = item_vectors(trained.released.weights, trained.content, trained.released.extras)
    dim = int(vectors.shape[1])
    with tenant_context(tenant_id):
        version = _version_row(tenant_id, claim_, trained, VersionStatus.MATERIALISING).version
    with tenant_context(tenant_id):
        served.version_create(tenant_id=tenant_id, version=version)  # short DDL transaction
    with tenant_context(tenant_id):
        served.vectors_upsert(
            tenant_id=tenant_id, version=version, item_pks=trained.item_pks.tolist(), vectors=vectors
        )
    _stage(tenant_id, claim_, progress.INDEXING)
    with tenant_context(tenant_id):
        served.version_index(tenant_id=tenant_id, version=version, dim=dim)
        ModelVersion.objects.filter(tenant_id=tenant_id, version=version).update(status=VersionStatus.READY)
    return version


def _record_release(
    tenant_id: int, run: TrainingRun, trained: Trained, gate: dict[str, Any], mv: ModelVersion, status: str
) -> None:
    """What ran (ledger mechanism), the run's popularity release and the run's outcome, in the
    caller's transaction. The budget was charged at request time; this records the realised spend."""
    entry = run_charge(tenant_id=tenant_id, run_id=run.pk)
    if entry is None:
        raise LookupError(f"training run {run.pk} has no charge")
    rel = trained.released.record
    sgd = next((m for m in rel.get("mechanisms", []) if str(m["name"]).startswith("DP-SGD")), None)
    ledger_mechanism_record(
        entry=entry,
        epsilon=trained.released.epsilon_spent,
        delta=trained.delta,
        noise_multiplier=float(sgd["noise_multiplier"]) if sgd else float(rel.get("sigma_total", 0.0)),
        sample_rate=float(sgd["sample_rate"]) if sgd else None,
        epochs=trained.released.epochs,
        steps=trained.released.steps,
        clip_norm=float(sgd["clip_norm"]) if sgd else None,
        users=trained.n_users,
        accountant=str(rel.get("accountant", "")),
        details=rel,
    )
    popularity_release_store(
        tenant_id=tenant_id,
        entry=entry,
        run=run,
        item_pks=trained.item_pks,
        counts=trained.released.pop_counts,
        epsilon=trained.epsilon_pop,
        delta=trained.delta,
        sigma=trained.released.sigma_pop,
        cap=int(trained.config["pop_cap"]),
        n_users=trained.n_users,
    )
    now = timezone.now()
    run.status, run.finished_at, run.heartbeat_at = status, now, now
    run.epsilon_pop = trained.epsilon_pop
    run.epsilon_sgd = float(sgd["epsilon_alone"]) if sgd else 0.0
    run.epsilon_spent, run.delta_used = trained.released.epsilon_spent, trained.delta
    run.n_users_trained, run.metrics, run.model_version = trained.n_users, trained.metrics, mv
    run.release, run.gate = _json_safe(rel), gate
    run.epoch, run.epochs = trained.released.epochs, trained.released.epochs
    run.stage = progress.DONE if status == RunStatus.SUCCEEDED else progress.REJECTED
    if status == RunStatus.REJECTED:
        run.error = str(gate["reason"])[:1000]
    run.loss_history = [None if math.isnan(x) else x for x in trained.released.loss_history]
    run.save()


def _json_safe(value: Any) -> Any:
    """Infinities become strings: JSON (and PostgreSQL jsonb) has no inf."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def _reject(tenant_id: int, claim_: Claim, run_id: int, trained: Trained, gate: dict[str, Any]) -> None:
    """Keep the version (arrays only, no served vectors) inactive, with the gate's reason; audited."""
    with tenant_context(tenant_id):
        run = _ours(tenant_id, claim_).select_for_update().first()
        if run is None:
            raise RunAbandoned(f"training run {run_id} is no longer running here")
        mv = _version_row(tenant_id, claim_, trained, VersionStatus.REJECTED)
        _record_release(tenant_id, run, trained, gate, mv, RunStatus.REJECTED)
        audit.record(
            tenant_id=tenant_id,
            actor=SystemActor.TASK_MODELING_TRAIN,
            action=AuditAction.MODEL_REJECT,
            target_type="model_version",
            target_id=str(mv.version),
            details={
                "run": run_id,
                "reason": gate["reason"],
                "epsilon_spent": repr(trained.released.epsilon_spent),
                "design": trained.design,
            },
        )


def _switch(
    tenant_id: int, claim_: Claim, run_id: int, version: int, trained: Trained, gate: dict[str, Any]
) -> dict[str, Any] | None:
    """Make ``version`` active; returns the feature configuration of the version it replaced."""
    from apps.modeling.lifecycle import point_at, top_up_served

    cold = trained.released.cold_extras
    with tenant_context(tenant_id):
        run = _ours(tenant_id, claim_).select_for_update().first()
        if run is None:
            raise RunAbandoned(f"training run {run_id} is no longer running here")
        # items encoded while we trained: give them served vectors (no released count yet)
        top_up_served(tenant_id, version, trained.released.weights, lambda pks: np.tile(cold, (len(pks), 1)))
        old = ActiveModel.objects.filter(tenant_id=tenant_id).values_list("version", flat=True).first()
        previous_features: dict[str, Any] | None = None
        if old is not None:
            previous_features = (
                ModelVersion.objects.filter(tenant_id=tenant_id, version=old)
                .values_list("feature_config", flat=True)
                .first()
            )
        mv = ModelVersion.objects.get(tenant_id=tenant_id, version=version)
        _record_release(tenant_id, run, trained, gate, mv, RunStatus.SUCCEEDED)
        point_at(
            tenant_id,
            version,
            actor=SystemActor.TASK_MODELING_TRAIN,
            action=AuditAction.MODEL_ACTIVATE,
            details={
                "run": run_id,
                "checksum": mv.checksum,
                "epsilon_spent": repr(run.epsilon_spent),
                "design": trained.design,
                "gate": gate["reason"],
            },
        )
    return previous_features


def discard_versions_of_run(*, tenant_id: int, run_id: int) -> None:
    """Drop served vectors of a failed run's versions that never became active."""
    with tenant_context(tenant_id):
        versions = list(
            ModelVersion.objects.filter(
                tenant_id=tenant_id,
                run_id=run_id,
                status__in=[VersionStatus.MATERIALISING, VersionStatus.READY],
            ).values_list("version", flat=True)
        )
    for version in versions:
        with tenant_context(tenant_id):
            served.version_drop(tenant_id=tenant_id, version=version)
            ModelVersion.objects.filter(tenant_id=tenant_id, version=version).update(
                status=VersionStatus.FAILED
            )


def _retire_old_versions(tenant_id: int) -> None:
    from apps.modeling.lifecycle import retire_leaves

    retire_leaves(tenant_id)


def rebuild_user_states(tenant_id: int, batch: int = 200) -> int:
    """Have every user's state recomputed from the event log; returns how many were.

    Needed only when a new version reads states with another feature configuration than the
    version it replaced (``state_from_history`` under the configuration states are kept with);
    versions are trained with ``apps.modeling.ml.features.feature_config()``, so this runs after a
    deploy changed that configuration. Profiles owns the states: it does the work in its
    ``on_feature_layout_changed`` hook (``apps.core.hooks``), one short transaction per user.
    """
    rebuilt = hooks.run_feature_layout_changed(tenant_id)
    log.info("rebuilt %d user states of tenant %s for a new feature configuration", rebuilt, tenant_id)
    return rebuilt

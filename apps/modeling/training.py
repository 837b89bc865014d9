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
3. **DP releases**, by the run's ``dp_design`` (``Tenant.settings["dp_design"]``):
   ``"factors"`` (default): DP popularity and the DP item-item Gram over its top-M items (two
   Gaussian mechanisms, sensitivity 1, composed exactly as GDP to the whole (ε, δ)); the tower is
   its initialisation (no DP-SGD, ``epochs = 0``). ``"dpsgd"`` (legacy): DP popularity
   (ε_pop = share·ε, δ/2) and DP-SGD (ε_sgd = ε - ε_pop, δ/2) with progress (epoch, loss) written
   to the run row. A heartbeat thread keeps ``heartbeat_at`` fresh.
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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.conf import sotto_setting
from apps.core.tenant_db import tenant_context
from apps.modeling import artifacts, served, tenant_data
from apps.modeling.ml.config import ModelConfig
from apps.modeling.ml.features import FeatureConfig
from apps.modeling.models import (
    ActiveModel,
    LedgerEntry,
    LedgerMechanism,
    ModelVersion,
    RunStatus,
    TrainingRun,
    VersionStatus,
)

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
    stale_s = float(sotto_setting("MODELING_STALE_AFTER_S"))
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
                audit.record(tenant_id=tenant_id, actor="task:modeling.train", action="training_run.failed",
                             target_type="training_run", target_id=str(run_id), details={"reason": "worker lost"})
                transaction.on_commit(lambda: discard_versions_of_run(tenant_id=tenant_id, run_id=run_id))
            else:
                log.info("training run %s is alive elsewhere (%s message ignored)", run_id,
                         "redelivered" if redelivered else "duplicate")
            return None
        if run.status != RunStatus.QUEUED:
            return None
        token = uuid.uuid4().hex
        run.status, run.claim_token, run.started_at, run.heartbeat_at = RunStatus.RUNNING, token, now, now
        run.attempts += 1
        run.worker = f"{socket.gethostname()}"[:255]
        run.save(update_fields=["status", "claim_token", "started_at", "heartbeat_at", "attempts", "worker"])
    return Claim(run_id=run_id, token=token)


def _ours(tenant_id: int, claim_: Claim) -> Any:
    return TrainingRun.objects.filter(tenant_id=tenant_id, pk=claim_.run_id, claim_token=claim_.token,
                                      status=RunStatus.RUNNING)


def _beat(tenant_id: int, claim_: Claim, **fields: Any) -> None:
    with tenant_context(tenant_id):
        if not _ours(tenant_id, claim_).update(heartbeat_at=timezone.now(), **fields):
            raise RunAbandoned(f"training run {claim_.run_id} is no longer running here")


class Heartbeat:
    """Background thread refreshing ``heartbeat_at`` while a long step (epoch, index build) runs."""

    def __init__(self, tenant_id: int, claim_: Claim, every_s: float) -> None:
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._loop, args=(tenant_id, claim_, every_s), daemon=True,
                                        name=f"heartbeat-run-{claim_.run_id}")

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


@dataclass
class Trained:
    weights: dict[str, np.ndarray]
    item_pks: np.ndarray
    extras: np.ndarray
    content: np.ndarray
    features: FeatureConfig
    config: dict[str, Any]
    n_users: int
    epsilon_pop: float
    delta_pop: float
    sigma_pop: float
    pop_counts: np.ndarray
    epsilon_sgd: float | None
    epsilon_sgd_other: float | None
    delta_sgd: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: int
    accountant: str | None
    grad_sample_mode: str | None
    loss_history: list[float]
    metrics: dict[str, Any]
    design: str = "dpsgd"
    epsilon_total: float | None = None  # "factors": ε of both releases composed (GDP) at delta_pop
    release: dict[str, Any] = field(default_factory=dict)  # "factors": sigmas, mu split, rank, M (ledger)
    cold_extras: np.ndarray | None = None  # extras row of items outside the universe


def _model_config(config: dict[str, Any]) -> ModelConfig:
    from dataclasses import fields

    known = {f.name for f in fields(ModelConfig)}
    values: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items() if k in known}
    return ModelConfig(**values)


def train_tenant(
    *, data: tenant_data.TenantData, config: dict[str, Any], epsilon: float, delta: float, seed: int,
    features: FeatureConfig, on_epoch: Callable[[int, int, float], None] | None = None,
) -> Trained:
    """Pure part of a run (no database): holdout split, DP releases, tower, holdout metrics.

    ``config["dp_design"] == "factors"`` and finite ε: DP popularity + DP Gram factors
    (``ml.dp_factors.release_item_extras``, GDP, whole (ε, δ)), tower = initialisation. Otherwise
    (legacy "dpsgd", or ε = inf) DP popularity + DP-SGD as before.
    """
    import torch

    from apps.modeling.ml import baselines, inference
    from apps.modeling.ml.data import from_arrays, p1_split
    from apps.modeling.ml.metrics import evaluate_scores
    from apps.modeling.ml.popularity import dp_popularity, popularity_feature
    from apps.modeling.ml.train import TrainData, train_model, user_inputs

    threads = int(sotto_setting("MODELING_TORCH_THREADS"))
    if threads > 0:
        torch.set_num_threads(threads)
    mc = _model_config(config)
    interactions = from_arrays(data.user, data.item, data.value, data.ts, item_ids=data.item_pks)
    holdout = float(config.get("holdout_fraction", 0.1))
    split = p1_split(interactions, holdout) if holdout > 0 else None
    train = split.train if split is not None else interactions
    design = str(config.get("dp_design", "dpsgd"))
    release: dict[str, Any] = {}
    cold: np.ndarray | None = None
    eps_total: float | None = None
    if design == "factors" and math.isfinite(epsilon):
        from apps.modeling.ml.dp_factors import release_item_extras
        from apps.modeling.services import GDP_ACCOUNTANT, factor_release_plan, gaussian_epsilon

        if mc.epochs != 0:
            raise ValueError("dp_design 'factors' spends the whole budget on its releases: epochs must be 0")
        m = min(mc.factor_items, train.n_items)
        mc = replace(mc, factor_rank=min(mc.factor_rank, m))  # a tiny catalogue has fewer eigenvectors
        rel = release_item_extras(train.user, train.item, train.n_items, epsilon, delta, mc, seed=seed)
        assert rel.sigma_gram is not None and rel.epsilon_sgd is None
        plan = factor_release_plan(config, epsilon, delta)
        mu = math.sqrt(1.0 / rel.sigma_pop ** 2 + 1.0 / rel.sigma_gram ** 2)
        eps_total = gaussian_epsilon(1.0 / mu, delta)
        if eps_total > epsilon + 1e-9:  # never release more than was charged
            raise RuntimeError(f"composed ε {eps_total!r} exceeds the charged ε {epsilon!r}")
        extras, pop_counts, sigma_pop = rel.extras, rel.pop_counts, rel.sigma_pop
        eps_pop, delta_pop = gaussian_epsilon(rel.sigma_pop, delta), delta  # the popularity release alone
        eps_sgd, delta_sgd = None, 0.0
        cold = np.zeros(extras.shape[1], dtype=np.float32)
        cold[-1] = float(np.linalg.norm(extras, axis=1).max())  # pad: same norm as every other row
        release = {
            "design": "factors",
            "mechanism": "gaussian popularity + gaussian item-item gram (DP PureSVD), no DP-SGD",
            "accountant": GDP_ACCOUNTANT, **plan,
            "sigma_pop": rel.sigma_pop, "sigma_gram": rel.sigma_gram, "mu_total": mu,
            "epsilon_composed": eps_total, "epsilon_pop_alone": eps_pop, "delta": delta,
            "factor_rank": mc.factor_rank, "factor_items": m, "pop_cap": mc.pop_cap,
            "sensitivity": 1.0, "users": interactions.n_users, "users_released": train.n_users,
        }
        td = TrainData(train, data.content, extras, features)
        res = train_model(mc, td, seed=seed, epsilon=None, delta=None, on_progress=on_epoch)
    else:
        design = "dpsgd"
        share = mc.pop_epsilon_share
        eps_pop, delta_pop = share * epsilon, delta / 2
        eps_sgd, delta_sgd = epsilon - eps_pop, delta / 2
        pop = dp_popularity(train.user, train.item, train.n_items, eps_pop, delta_pop, cap=mc.pop_cap, seed=seed)
        extras = popularity_feature(pop.counts, pop.sigma)[:, None]
        pop_counts, sigma_pop = pop.counts, pop.sigma
        td = TrainData(train, data.content, extras, features)
        res = train_model(mc, td, seed=seed, epsilon=eps_sgd, delta=delta_sgd, on_progress=on_epoch)
    metrics: dict[str, Any] = {}
    if split is not None and any(len(t) for t in split.test_items):
        xu, _, _ = user_inputs(td)
        uvec = inference.user_vectors(res.weights, xu)
        ivec = inference.item_vectors(res.weights, data.content, extras)
        seen = baselines.train_item_lists(split.train)
        model_m = evaluate_scores(lambda u: uvec[u] @ ivec.T, seen, split.test_items, train.n_items)
        pop_m = evaluate_scores(lambda u: np.tile(pop_counts, (len(u), 1)), seen, split.test_items, train.n_items)
        metrics = {
            "protocol": f"last {holdout:.0%} of each user's events held out (P1); not differentially private",
            "recall@20": model_m["recall@20"], "recall@20_capped": model_m["recall@20_capped"],
            "ndcg@10": model_m["ndcg@10"], "users_evaluated": int(model_m["n_users"]),
            "dp_popularity_recall@20": pop_m["recall@20"], "dp_popularity_ndcg@10": pop_m["ndcg@10"],
        }
    return Trained(
        weights=res.weights, item_pks=data.item_pks, extras=extras, content=data.content, features=features,
        config=config, n_users=interactions.n_users, epsilon_pop=eps_pop, delta_pop=delta_pop, sigma_pop=sigma_pop,
        pop_counts=pop_counts, epsilon_sgd=res.epsilon, epsilon_sgd_other=res.epsilon_other, delta_sgd=delta_sgd,
        noise_multiplier=res.noise_multiplier, sample_rate=res.sample_rate, steps=res.steps, epochs=res.epochs,
        accountant=res.accountant, grad_sample_mode=res.grad_sample_mode, loss_history=res.loss_history,
        metrics=metrics, design=design, epsilon_total=eps_total, release=release, cold_extras=cold,
    )


def training_run_execute(*, tenant_id: int, run_id: int, redelivered: bool = False) -> str:
    """Run one charged training run end to end (see the module docstring); returns the outcome."""
    from apps.profiles.selectors import feature_config

    claim_ = claim(tenant_id=tenant_id, run_id=run_id, redelivered=redelivered)
    if claim_ is None:
        return "skipped"
    version: int | None = None
    try:
        with Heartbeat(tenant_id, claim_, float(sotto_setting("MODELING_HEARTBEAT_S"))) as beat:
            with tenant_context(tenant_id):
                run = TrainingRun.objects.get(tenant_id=tenant_id, pk=run_id)
                data = tenant_data.load(tenant_id)
            n_users = data.n_users
            if n_users == 0 or len(data.item_pks) == 0:
                raise ValueError("no events on encoded items to train on")
            delta = min(run.delta, 1.0 / n_users)  # never above the charge, and <= 1/N at training time

            def on_epoch(epoch: int, epochs: int, loss: float) -> None:
                if beat.lost:
                    raise RunAbandoned(f"training run {run_id} was reaped")
                value = None if math.isnan(loss) else float(loss)
                _beat(tenant_id, claim_, epoch=epoch, epochs=epochs, loss=value)

            _beat(tenant_id, claim_, n_users_trained=n_users)
            trained = train_tenant(data=data, config=run.config, epsilon=run.epsilon, delta=delta, seed=run.seed,
                                   features=feature_config(), on_epoch=on_epoch)
            version = _materialise(tenant_id, claim_, trained)
            previous_features = _switch(tenant_id, claim_, run_id, version, trained, delta)
    except RunAbandoned as exc:
        log.warning("%s", exc)
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
        return "abandoned"
    except Exception as exc:
        log.exception("training run %s of tenant %s failed", run_id, tenant_id)
        _fail(tenant_id, claim_, f"{type(exc).__name__}: {exc}")
        discard_versions_of_run(tenant_id=tenant_id, run_id=run_id)
        return "failed"
    _retire_old_versions(tenant_id)
    if previous_features is not None and previous_features != artifacts.feature_config_to_json(trained.features):
        rebuild_user_states(tenant_id)
    return "succeeded"


def _fail(tenant_id: int, claim_: Claim, reason: str) -> None:
    with tenant_context(tenant_id):
        if _ours(tenant_id, claim_).update(status=RunStatus.FAILED, error=reason[:1000], finished_at=timezone.now()):
            audit.record(tenant_id=tenant_id, actor="task:modeling.train", action="training_run.failed",
                         target_type="training_run", target_id=str(claim_.run_id), details={"reason": reason[:200]})


def _materialise(tenant_id: int, claim_: Claim, trained: Trained) -> int:
    from apps.modeling.ml.inference import item_vectors

    blob, checksum = artifacts.pack(trained.weights, trained.item_pks, trained.extras, trained.cold_extras)
    vectors = item_vectors(trained.weights, trained.content, trained.extras)
    dim = int(vectors.shape[1])
    with tenant_context(tenant_id):
        with connection.cursor() as cursor:  # version numbers: one allocator per tenant at a time
            cursor.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", [f"modeling_version:{tenant_id}"])
        last = ModelVersion.objects.filter(tenant_id=tenant_id).order_by("-version").values_list("version", flat=True).first()
        version = int(last or 0) + 1
        ModelVersion.objects.create(
            tenant_id=tenant_id, version=version, run_id=claim_.run_id, status=VersionStatus.MATERIALISING,
            blob=blob, checksum=checksum, feature_config=artifacts.feature_config_to_json(trained.features),
            model_config=trained.config, item_dim=dim, n_items=len(trained.item_pks), metrics=trained.metrics,
        )
    with tenant_context(tenant_id):
        served.version_create(tenant_id=tenant_id, version=version)  # short DDL transaction
    with tenant_context(tenant_id):
        served.vectors_upsert(tenant_id=tenant_id, version=version, item_pks=trained.item_pks.tolist(), vectors=vectors)
    _beat(tenant_id, claim_)
    with tenant_context(tenant_id):
        served.version_index(tenant_id=tenant_id, version=version, dim=dim)
        ModelVersion.objects.filter(tenant_id=tenant_id, version=version).update(status=VersionStatus.READY)
    return version


def _switch(
    tenant_id: int, claim_: Claim, run_id: int, version: int, trained: Trained, delta: float
) -> dict[str, Any] | None:
    """Make ``version`` active; returns the feature configuration of the version it replaced."""
    from apps.modeling.ml.inference import item_vectors
    from apps.modeling.services import popularity_release_store

    with tenant_context(tenant_id):
        run = _ours(tenant_id, claim_).select_for_update().first()
        if run is None:
            raise RunAbandoned(f"training run {run_id} is no longer running here")
        # items encoded while we trained: give them served vectors (no released count yet)
        missing = served.missing_item_pks(tenant_id=tenant_id, version=version)
        if missing:
            from apps.catalog.selectors import content_vectors

            vecs = content_vectors(tenant_id, missing)
            pks = sorted(vecs)
            if pks:
                content = np.stack([vecs[p] for p in pks]).astype(np.float32)
                extras = np.zeros((len(pks), trained.extras.shape[1]), dtype=np.float32)
                if trained.cold_extras is not None:
                    extras[:] = trained.cold_extras
                served.vectors_upsert(tenant_id=tenant_id, version=version, item_pks=pks,
                                      vectors=item_vectors(trained.weights, content, extras))
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO modeling_activemodel (tenant_id, version, previous_version, switched_at) "
                "VALUES (%s, %s, NULL, now()) ON CONFLICT (tenant_id) DO NOTHING RETURNING version",
                [tenant_id, version],
            )
            created = cursor.fetchone() is not None
        pointer = ActiveModel.objects.select_for_update().get(tenant_id=tenant_id)
        now = timezone.now()
        previous_features: dict[str, Any] | None = None
        if not created:
            old = pointer.version
            previous_features = (ModelVersion.objects.filter(tenant_id=tenant_id, version=old)
                                 .values_list("feature_config", flat=True).first())
            # the old previous version leaves rollback range; its leaf is dropped after commit
            ModelVersion.objects.filter(tenant_id=tenant_id, status=VersionStatus.PREVIOUS).update(status=VersionStatus.RETIRED)
            ModelVersion.objects.filter(tenant_id=tenant_id, version=old).update(status=VersionStatus.PREVIOUS)
            pointer.previous_version, pointer.version, pointer.switched_at = old, version, now
            pointer.save(update_fields=["previous_version", "version", "switched_at"])
        mv = ModelVersion.objects.get(tenant_id=tenant_id, version=version)
        mv.status, mv.activated_at = VersionStatus.ACTIVE, now
        mv.save(update_fields=["status", "activated_at"])
        entry = LedgerEntry.objects.get(tenant_id=tenant_id, run_id=run_id)
        eps_sgd = float(trained.epsilon_sgd or 0.0)
        spent = eps_sgd + trained.epsilon_pop
        if trained.design == "factors":
            assert trained.epsilon_total is not None
            spent = trained.epsilon_total  # both releases composed exactly (GDP); no DP-SGD
            LedgerMechanism.objects.create(
                tenant_id=tenant_id, entry=entry, epsilon=spent, delta=delta,
                noise_multiplier=float(trained.release["sigma_total"]), sample_rate=None, epochs=0, steps=0,
                clip_norm=None, users=trained.n_users, accountant=str(trained.release["accountant"]),
                details=trained.release,
            )
        else:
            LedgerMechanism.objects.create(
                tenant_id=tenant_id, entry=entry, epsilon=spent, delta=delta,
                noise_multiplier=trained.noise_multiplier, sample_rate=trained.sample_rate, epochs=trained.epochs,
                steps=trained.steps, clip_norm=float(trained.config["max_grad_norm"]), users=trained.n_users,
                accountant=trained.accountant or "",
                details={"design": "dpsgd", "mechanism": "dp-sgd + gaussian popularity", "epsilon_sgd": eps_sgd,
                         "epsilon_sgd_other_accountant": trained.epsilon_sgd_other,
                         "epsilon_pop": trained.epsilon_pop, "delta_sgd": trained.delta_sgd,
                         "delta_pop": trained.delta_pop, "popularity_sigma": trained.sigma_pop,
                         "grad_sample_mode": trained.grad_sample_mode},
            )
        popularity_release_store(
            tenant_id=tenant_id, entry=entry, run=run, item_pks=trained.item_pks, counts=trained.pop_counts,
            epsilon=trained.epsilon_pop, delta=trained.delta_pop, sigma=trained.sigma_pop,
            cap=int(trained.config["pop_cap"]), n_users=trained.n_users,
        )
        run.status, run.finished_at, run.heartbeat_at = RunStatus.SUCCEEDED, now, now
        run.epsilon_sgd, run.epsilon_pop = eps_sgd, trained.epsilon_pop
        run.epsilon_spent, run.delta_used = spent, delta
        run.n_users_trained, run.metrics, run.model_version = trained.n_users, trained.metrics, mv
        run.loss_history = [None if math.isnan(x) else x for x in trained.loss_history]
        run.save()
        audit.record(
            tenant_id=tenant_id, actor="task:modeling.train", action="model.activate", target_type="model_version",
            target_id=str(version),
            details={"run": run_id, "checksum": mv.checksum, "previous": None if created else pointer.previous_version,
                     "epsilon_spent": repr(run.epsilon_spent)},
        )
    return previous_features


def discard_versions_of_run(*, tenant_id: int, run_id: int) -> None:
    """Drop served vectors of a failed run's versions that never became active."""
    with tenant_context(tenant_id):
        versions = list(ModelVersion.objects.filter(
            tenant_id=tenant_id, run_id=run_id, status__in=[VersionStatus.MATERIALISING, VersionStatus.READY]
        ).values_list("version", flat=True))
    for version in versions:
        with tenant_context(tenant_id):
            served.version_drop(tenant_id=tenant_id, version=version)
            ModelVersion.objects.filter(tenant_id=tenant_id, version=version).update(status=VersionStatus.FAILED)


def _retire_old_versions(tenant_id: int) -> None:
    """Drop the leaves of retired versions (everything but the active and the previous one)."""
    with tenant_context(tenant_id):
        retired = list(ModelVersion.objects.filter(tenant_id=tenant_id, status=VersionStatus.RETIRED)
                       .values_list("version", flat=True))
    for version in retired:
        with tenant_context(tenant_id):
            if served.version_exists(tenant_id=tenant_id, version=version):
                served.version_drop(tenant_id=tenant_id, version=version)


def rebuild_user_states(tenant_id: int, batch: int = 200) -> int:
    """Recompute every user's state from the event log (profiles' ``user_state_rebuild``).

    Needed only when a new version reads states with another feature configuration than the
    version it replaced (``state_from_history`` under the configuration states are kept with);
    versions are trained with ``apps.profiles.selectors.feature_config()``, so this runs after a
    deploy changed that configuration. One short transaction per user.
    """
    from apps.profiles.services import user_state_rebuild

    with tenant_context(tenant_id), connection.cursor() as cursor:
        cursor.execute("SELECT user_id FROM profiles_userstate WHERE tenant_id = %s ORDER BY user_id", [tenant_id])
        user_ids = [int(row[0]) for row in cursor.fetchall()]
    for user_id in user_ids:
        user_state_rebuild(tenant_id, user_id)
    log.info("rebuilt %d user states of tenant %s for a new feature configuration", len(user_ids), tenant_id)
    return len(user_ids)

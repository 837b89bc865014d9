"""Training runs in process (no broker): versions, the atomic switch, served vectors, failures.

One trained tenant per module (``trained``: 30 items in 3 clusters, 40 users who each stay in
one cluster, model v1 trained with ε = 4); tests that train again use their own tenant.
"""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from django.db import connection

from apps.core.tenant_db import tenant_context
from apps.modeling import selectors, served, services, training
from apps.modeling.interest import user_interest
from apps.modeling.ml import accounting
from apps.modeling.ml.accounting import history_epsilon
from apps.modeling.ml.dp_factors import factor_schedule
from apps.modeling.models import ActiveModel, LedgerEntry, ModelVersion, TrainingRun
from tests.modeling.conftest import ROOT, trained_persona
from tests.modeling.support import active_model, seed_tenant, set_modeling


@pytest.fixture(scope="module")
def trained(django_db_setup, django_db_blocker):
    return trained_persona(django_db_blocker)


def _tid(persona):
    return persona.tenant.id


def _leaf_flags(tenant_id):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE relname LIKE %s AND relkind IN ('r', 'p') ORDER BY relname",
            [f"modeling_served_vector_t{tenant_id}%"],
        )
        return {name: (rls, forced) for name, rls, forced in cursor.fetchall()}


def _start(persona, epsilon=1.0):
    sent: list[int] = []
    original = services._enqueue
    services._enqueue = lambda tenant_id, run_id: sent.append(run_id)
    try:
        return services.training_run_start(tenant_id=_tid(persona), epsilon=epsilon, actor="test")["id"]
    finally:
        services._enqueue = original


def test_a_succeeded_run_switches_the_pointer_with_its_materialised_vectors(trained, live_db):
    tid = _tid(trained)
    run = selectors.training_runs_for_tenant(tenant_id=tid)[-1]  # the fixture's run, the oldest

    assert run["status"] == "succeeded" and run["model_version"] == 1 and run["progress"] == 1.0
    assert run["epoch"] == run["epochs"] == 0 and run["loss"] is None  # "factors" design: no DP-SGD
    model = active_model(tid)
    # [content 384, popularity, r factors (r from the ε schedule), pad]
    rank = factor_schedule(4.0)["factor_rank"]
    assert model is not None and model.version == 1 and model.item_dim == 384 + 1 + rank + 1
    with tenant_context(tid):
        version = ModelVersion.objects.get(tenant_id=tid, version=1)
        assert version.status == "active" and version.checksum == model.checksum
        assert ActiveModel.objects.get(tenant_id=tid).version == 1
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), min(vector_dims(embedding)) FROM modeling_served_vector "
                "WHERE tenant_id = %s AND version = 1",
                [tid],
            )
            assert cursor.fetchone() == (30, model.item_dim)
    # the new partitions are under forced RLS like every tenant table
    flags = _leaf_flags(tid)
    assert flags == {
        f"modeling_served_vector_t{tid}": (True, True),
        f"modeling_served_vector_t{tid}_v1": (True, True),
    }


def test_served_knn_uses_the_version_leaf_hnsw_index(trained, live_db):
    tid = _tid(trained)
    model = active_model(tid)
    vector = user_interest(model, None)
    with tenant_context(tid), connection.cursor() as cursor:
        # 30 rows: the planner rightly prefers an exact sort; forbid it to see that the index can serve
        cursor.execute(
            "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), "
            "set_config('enable_sort', 'off', true)"
        )
        cursor.execute(
            "EXPLAIN SELECT item_id FROM modeling_served_vector WHERE tenant_id = %s AND version = 1 "  # noqa: S608
            f"ORDER BY embedding::vector({int(model.item_dim)}) <=> %s::vector({int(model.item_dim)}) LIMIT 5",
            [tid, "[" + ",".join(map(str, vector.tolist())) + "]"],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert f"modeling_served_vector_t{tid}_v1_hnsw" in plan, plan[:300]


def test_the_served_model_recommends_the_users_own_cluster_far_above_random(trained, live_db):
    """Planted structure: through the serving path (state → tower → HNSW), unseen items of the
    user's own cluster come first. Random order would put 2 of 20 unseen candidates in the top 5."""
    from apps.profiles.selectors import user_state_and_seen

    tid = _tid(trained)
    model = active_model(tid)
    hits = total = 0
    for u in range(40):
        state, seen = user_state_and_seen(tid, f"u{u}")
        top = selectors.served_knn(
            tenant_id=tid, version=model.version, vector=user_interest(model, state), k=2, exclude_pks=seen
        )
        own = [ext for _, ext, _ in top if int(ext[1:]) % 3 == u % 3]
        hits += len(own)
        total += len(top)
    assert total == 80
    assert hits / total > 0.9, hits / total  # random: 2/22 unseen items are the user's cluster ~ 0.09


def test_reported_epsilon_equals_the_accountants_and_never_exceeds_the_charge(live_db, monkeypatch):
    import opacus

    from tests.support import make_tenant

    engines = []
    original = opacus.PrivacyEngine.make_private

    def spy(self, **kw):
        engines.append(self)
        return original(self, **kw)

    monkeypatch.setattr(opacus.PrivacyEngine, "make_private", spy)
    persona = make_tenant("eps")
    seed_tenant(persona)
    set_modeling(persona, dp_design="tower", epochs=2, seed=3, holdout_fraction=0.0)
    run_id = _start(persona, epsilon=2.0)

    assert training.training_run_execute(tenant_id=_tid(persona), run_id=run_id) == "succeeded"

    run = selectors.training_run_get(tenant_id=_tid(persona), run_id=run_id)
    (engine,) = engines
    delta = run["delta_used"]
    # DP-SGD alone is what Opacus' accountant says; the popularity release alone is its share of ε;
    # the run spends both composed by the same RDP accountant (not their sum), never above the charge
    assert run["epsilon_sgd"] == pytest.approx(engine.accountant.get_epsilon(delta))
    assert run["epsilon_pop"] == pytest.approx(0.2 * 2.0, rel=1e-6)
    sigma_pop = run["release"]["mechanisms"][0]["sigma"]
    composed = history_epsilon([(sigma_pop, 1.0, 1), *engine.accountant.history], delta)
    assert run["epsilon_spent"] == pytest.approx(composed)
    assert max(run["epsilon_sgd"], run["epsilon_pop"]) < run["epsilon_spent"] <= run["epsilon"] + 1e-9
    assert run["design"] == "tower" and "Opacus" in run["mechanism"]
    (entry,) = selectors.privacy_budget(tenant_id=_tid(persona))["ledger"]
    assert entry["epsilon"] == 2.0 and entry["epsilon_accounted"] == run["epsilon_spent"]
    assert entry["noise_multiplier"] == engine.accountant.history[0][0] and entry["steps"] == 4
    assert entry["accountant"].startswith("RDP (Opacus)")
    assert entry["users"] == 40 and entry["delta_used"] == pytest.approx(1e-6)
    assert run["metrics"] == {}  # holdout 0: no offline metrics


def test_with_two_training_processes_a_run_trains_on_torch_distributed_and_spends_the_same(live_db, settings):
    from tests.support import make_tenant

    # Given an operator who gives each tenant's DP-SGD two processes, and a tenant with enough users
    # for two ranks (300 users: 75 expected per rank and step)
    settings.SOTTO = {**settings.SOTTO, "MODELING_TRAIN_PROCESSES": 2}
    persona = make_tenant("ddp")
    seed_tenant(persona, n_users=300)
    set_modeling(persona, dp_design="tower", epochs=2, seed=3, holdout_fraction=0.0)
    run_id = _start(persona, epsilon=2.0)

    # when the run executes, then torchrun's two gloo ranks trained it, and the ledger records the
    # plan that single-process Opacus would have run: the same steps, rate and composed ε
    assert training.training_run_execute(tenant_id=_tid(persona), run_id=run_id) == "succeeded"
    run = selectors.training_run_get(tenant_id=_tid(persona), run_id=run_id)
    assert run["release"]["processes"] == 2
    assert run["release"]["engine"] == "torch.distributed (gloo) + Opacus DPDDP"
    _, q, steps = accounting.dp_schedule(300, 2048, 2)
    assert run["release"]["sample_rate"] == q and run["release"]["steps"] == steps == 4
    sigma_pop = run["release"]["mechanisms"][0]["sigma"]
    composed = history_epsilon(
        [(sigma_pop, 1.0, 1), (run["release"]["noise_multiplier"], q, steps)], run["delta_used"]
    )
    assert run["epsilon_spent"] == pytest.approx(composed) and run["epsilon_spent"] <= 2.0 + 1e-9


def test_the_factor_design_records_both_releases_and_never_composes_above_the_charge(live_db):
    from apps.modeling.artifacts import load_artifacts
    from tests.support import make_tenant

    persona = make_tenant("gdp")
    seed_tenant(persona)
    set_modeling(persona, seed=3, holdout_fraction=0.0)  # default design: "factors"
    tid = _tid(persona)
    run_id = _start(persona, epsilon=2.0)

    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "succeeded"

    run = selectors.training_run_get(tenant_id=tid, run_id=run_id)
    (entry,) = selectors.privacy_budget(tenant_id=tid)["ledger"]
    d, delta = entry["details"], run["delta_used"]
    assert d["design"] == "factors" and entry["accountant"] == accounting.GDP_ACCOUNTANT
    assert entry["accountant"] == "GDP (analytic Gaussian, exact composition)"
    assert (
        d["factor_rank"] == factor_schedule(2.0, n_users=40)["factor_rank"] and d["factor_items"] == 30
    )  # M capped at the items
    assert d["users"] == 40 and d["delta"] == delta
    assert d["mu2_share_pop"] == pytest.approx(0.4) and d["mu2_share_gram"] == pytest.approx(0.6)
    # exact GDP composition of the two sensitivity-1 Gaussians: mu² = 1/sigma_pop² + 1/sigma_gram²
    mu = math.sqrt(1 / d["sigma_pop"] ** 2 + 1 / d["sigma_gram"] ** 2)
    assert mu == pytest.approx(d["mu_total"]) and d["mu_pop"] ** 2 + d["mu_gram"] ** 2 == pytest.approx(mu**2)
    assert d["sigma_gram"] ** 2 * 0.6 == pytest.approx(d["sigma_pop"] ** 2 * 0.4)
    # the composition never exceeds the charge: mu-GDP is (2.0, δ)-DP, and its ε is the requested one
    assert accounting.gaussian_delta(1 / mu, 2.0) <= delta * (1 + 1e-9)
    assert accounting.gaussian_epsilon(1 / mu, delta) <= 2.0 + 1e-9
    assert entry["epsilon"] == 2.0 and entry["epsilon_accounted"] == run["epsilon_spent"]
    assert run["epsilon_spent"] <= run["epsilon"] + 1e-9 and run["epsilon_spent"] == pytest.approx(
        2.0, rel=1e-6
    )
    assert run["epsilon_sgd"] == 0.0 and 0 < run["epsilon_pop"] < 2.0  # popularity alone costs less
    assert entry["noise_multiplier"] == pytest.approx(1 / mu) and entry["steps"] == 0 and entry["epochs"] == 0
    assert entry["sampling_rate"] is None and entry["clip_norm"] is None and entry["delta_used"] == delta
    # serving: item_dim from the model, materialised vectors of that length; an item outside the
    # universe gets extras of the same norm (pad), so cosine ranks it like the others
    model = active_model(tid)
    assert model.item_dim == 384 + 1 + factor_schedule(2.0, n_users=40)["factor_rank"] + 1
    with tenant_context(tid):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*), min(vector_dims(embedding)), max(vector_dims(embedding)) "
                "FROM modeling_served_vector WHERE tenant_id = %s AND version = 1",
                [tid],
            )
            assert cursor.fetchone() == (30, model.item_dim, model.item_dim)
        art = load_artifacts(tid, 1)
    norms = np.linalg.norm(art.extras, axis=1)
    assert np.allclose(norms, norms.max(), atol=1e-5)
    assert np.linalg.norm(art.extras_for([10**12])[0]) == pytest.approx(norms.max(), abs=1e-5)
    assert user_interest(model, None).shape == (model.item_dim,)


def test_versions_keep_the_previous_for_rollback_and_drop_older_ones(live_db):
    from tests.support import make_tenant

    persona = make_tenant("ver")
    seed_tenant(persona)
    set_modeling(persona, seed=1)
    tid = _tid(persona)
    for _ in range(3):
        assert training.training_run_execute(tenant_id=tid, run_id=_start(persona)) == "succeeded"

    with tenant_context(tid):
        statuses = dict(ModelVersion.objects.filter(tenant_id=tid).values_list("version", "status"))
        pointer = ActiveModel.objects.get(tenant_id=tid)
    assert statuses == {1: "retired", 2: "previous", 3: "active"}
    assert (pointer.version, pointer.previous_version) == (3, 2)
    assert set(_leaf_flags(tid)) == {
        f"modeling_served_vector_t{tid}",
        f"modeling_served_vector_t{tid}_v2",
        f"modeling_served_vector_t{tid}_v3",
    }
    vector = user_interest(active_model(tid), None)
    # a request that read the pointer just before the switch still finds its own version
    assert len(selectors.served_knn(tenant_id=tid, version=2, vector=vector, k=5)) == 5
    assert selectors.served_knn(tenant_id=tid, version=1, vector=vector, k=5) == []
    evaluation = selectors.latest_evaluation(tid)
    assert evaluation is not None and evaluation["model_version"] == 3
    # rollback: the previous version serves again, weights and vectors together; and forward again
    back = {"version": 2, "previous_version": 3, "status": "active"}
    assert services.active_model_rollback(tenant_id=tid, actor="admin:t") == back
    assert active_model(tid).version == 2
    forward = {"version": 3, "previous_version": 2, "status": "active"}
    assert services.active_model_rollback(tenant_id=tid, actor="admin:t") == forward
    assert [p["cumulative"] for p in selectors.privacy_spend_series(tid)] == [1.0, 2.0, 3.0]


def test_a_failed_training_leaves_the_previous_model_serving_and_refunds_its_charge(
    trained, live_db, monkeypatch
):
    tid = _tid(trained)
    spent_before = selectors.privacy_budget(tenant_id=tid)["epsilon_spent"]
    before = active_model(tid)

    def boom(**kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(training, "train_tenant", boom)
    run_id = _start(trained, epsilon=0.5)

    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "failed"

    run = selectors.training_run_get(tenant_id=tid, run_id=run_id)
    assert run["status"] == "failed" and "disk on fire" in run["error"]
    assert active_model(tid).checksum == before.checksum
    # nothing was released, so the charge is reversed by a refund entry dated like it
    budget = selectors.privacy_budget(tenant_id=tid)
    assert budget["epsilon_spent"] == pytest.approx(spent_before)
    charge, refund = [e for e in budget["ledger"] if e["run_id"] == run_id]
    assert (charge["kind"], charge["epsilon"], charge["refunded"]) == ("training", 0.5, True)
    assert (refund["kind"], refund["epsilon"], refund["delta"]) == ("refund", -0.5, -charge["delta"])
    assert refund["created_at"] == charge["created_at"]
    assert "nothing was released" in refund["mechanism"]
    assert [p["cumulative"] for p in selectors.privacy_spend_series(tid)][-1] == pytest.approx(spent_before)


def test_a_run_that_released_its_version_is_never_refunded(live_db):
    from apps.modeling.ledger import ledger_refund_unreleased
    from tests.support import make_tenant

    persona = make_tenant("norefund")  # its own tenant: the shared one must keep serving version 1
    seed_tenant(persona)
    set_modeling(persona, seed=3)
    tid = _tid(persona)
    run_id = _start(persona, epsilon=0.5)
    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "succeeded"
    spent = selectors.privacy_budget(tenant_id=tid)["epsilon_spent"]
    with tenant_context(tid):
        assert ledger_refund_unreleased(tenant_id=tid, run_id=run_id, reason="late", actor="test") == 0.0
    assert selectors.privacy_budget(tenant_id=tid)["epsilon_spent"] == spent


def test_a_failure_after_materialising_drops_the_half_built_version(trained, live_db, monkeypatch):
    tid = _tid(trained)
    before = active_model(tid).version

    def switch_fails(*args, **kwargs):
        raise RuntimeError("switch failed")

    monkeypatch.setattr(training, "_switch", switch_fails)
    run_id = _start(trained, epsilon=0.5)
    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "failed"

    with tenant_context(tid):
        failed = ModelVersion.objects.get(tenant_id=tid, run_id=run_id)
    assert failed.status == "failed"
    assert f"modeling_served_vector_t{tid}_v{failed.version}" not in _leaf_flags(tid)
    assert active_model(tid).version == before


def test_a_redelivered_running_run_is_marked_worker_lost_and_never_trains_twice(
    trained, live_db, monkeypatch
):
    tid = _tid(trained)
    run_id = _start(trained, epsilon=0.5)
    assert training.claim(tenant_id=tid, run_id=run_id, redelivered=False) is not None  # a worker took it...
    monkeypatch.setattr(training, "train_tenant", lambda **kw: pytest.fail("trained twice"))
    with tenant_context(tid):
        ledger_before = LedgerEntry.objects.filter(tenant_id=tid).count()

    # ...died (no heartbeat since), and the broker redelivered the message
    with tenant_context(tid):
        TrainingRun.objects.filter(pk=run_id).update(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5))
    assert training.training_run_execute(tenant_id=tid, run_id=run_id, redelivered=True) == "skipped"

    run = selectors.training_run_get(tenant_id=tid, run_id=run_id)
    assert run["status"] == "failed" and run["error"] == "worker lost"
    with tenant_context(
        tid
    ):  # charged once, never twice, and refunded once (the lost worker released nothing)
        assert list(
            LedgerEntry.objects.filter(tenant_id=tid, run_id=run_id)
            .order_by("id")
            .values_list("kind", "epsilon")
        ) == [("training", 0.5), ("refund", -0.5)]
        assert LedgerEntry.objects.filter(tenant_id=tid).count() == ledger_before + 1
    # any later copy of the message is a no-op
    assert training.training_run_execute(tenant_id=tid, run_id=run_id, redelivered=True) == "skipped"


@pytest.mark.parametrize("redelivered", [False, True])
def test_a_message_for_a_run_whose_worker_still_beats_is_ignored(trained, live_db, monkeypatch, redelivered):
    """E.g. Redis redelivering a long run after its visibility timeout: failing it would waste its budget."""
    tid = _tid(trained)
    run_id = _start(trained, epsilon=0.25)
    assert training.claim(tenant_id=tid, run_id=run_id, redelivered=False) is not None
    monkeypatch.setattr(training, "train_tenant", lambda **kw: pytest.fail("trained twice"))

    assert training.training_run_execute(tenant_id=tid, run_id=run_id, redelivered=redelivered) == "skipped"

    assert selectors.training_run_get(tenant_id=tid, run_id=run_id)["status"] == "running"
    services.training_runs_reap(stale_after_s=0.0, requeue_after_s=1e9)  # leave no running run behind


def test_the_reaper_fails_silent_runs_and_resends_lost_queued_ones(trained, live_db, monkeypatch):
    tid = _tid(trained)
    stale_id = _start(trained, epsilon=0.25)
    assert training.claim(tenant_id=tid, run_id=stale_id, redelivered=False) is not None
    lost_id = _start(trained, epsilon=0.25)
    with tenant_context(tid):
        TrainingRun.objects.filter(pk=stale_id).update(heartbeat_at=datetime.now(UTC) - timedelta(minutes=10))
        TrainingRun.objects.filter(pk=lost_id).update(created_at=datetime.now(UTC) - timedelta(hours=1))
    resent: list[tuple[int, int]] = []
    monkeypatch.setattr(services, "_enqueue", lambda t, r: resent.append((t, r)))

    outcome = services.training_runs_reap(stale_after_s=120, requeue_after_s=600)

    assert outcome["failed"] >= 1 and (tid, lost_id) in resent
    stale = selectors.training_run_get(tenant_id=tid, run_id=stale_id)
    assert stale["status"] == "failed" and stale["error"].startswith("worker lost")
    assert selectors.training_run_get(tenant_id=tid, run_id=lost_id)["status"] == "queued"
    # re-sent once, not on every sweep
    resent.clear()
    services.training_runs_reap(stale_after_s=120, requeue_after_s=600)
    assert (tid, lost_id) not in resent
    with tenant_context(tid):
        TrainingRun.objects.filter(pk=lost_id).update(status="failed", error="test cleanup")


def test_catalogue_changes_reach_the_served_vectors(trained, live_db):
    from apps.catalog.models import Item
    from apps.catalog.vectors import VectorRow, vectors_write
    from apps.core.hooks import run_item_vectors_ready

    tid = _tid(trained)
    model = active_model(tid)
    vector = user_interest(model, None)
    with tenant_context(tid):
        target = Item.objects.get(tenant_id=tid, external_id="i4")
    everything = {
        ext for _, ext, _ in selectors.served_knn(tenant_id=tid, version=model.version, vector=vector, k=30)
    }
    assert "i4" in everything

    with tenant_context(tid):  # the trigger on catalog_item copies availability and categories
        Item.objects.filter(pk=target.pk).update(available=False, categories=["gone"])
    found = selectors.served_knn(tenant_id=tid, version=model.version, vector=vector, k=30)
    assert "i4" not in {ext for _, ext, _ in found} and len(found) == 29
    assert [
        e
        for _, e, _ in selectors.served_knn(
            tenant_id=tid, version=model.version, vector=vector, k=5, category="gone", available_only=False
        )
    ] == ["i4"]
    with tenant_context(tid):
        Item.objects.filter(pk=target.pk).update(available=True, categories=["c1"])

    # an item encoded after training gets a served vector in the encode transaction (hook)
    with tenant_context(tid):
        new = Item.objects.create(
            tenant_id=tid,
            external_id="late",
            title="late item",
            categories=["c0"],
            content_hash="f" * 64,
            encoding_status="ready",
            encoded_hash="f" * 64,
        )
        unit = np.ones(384, dtype=np.float32) / np.sqrt(384)
        vectors_write(
            tenant_id=tid,
            rows=[
                VectorRow(
                    item_pk=new.pk,
                    external_id="late",
                    vector=unit,
                    available=True,
                    categories=["c0"],
                    model="test",
                    content_hash="f" * 64,
                )
            ],
        )
        run_item_vectors_ready(tid, [new.pk])
    late = selectors.served_knn(tenant_id=tid, version=model.version, vector=vector, k=50)
    assert "late" in {e for _, e, _ in late}
    with tenant_context(tid):  # deleting the item cascades to its served vectors
        Item.objects.filter(pk=new.pk).delete()
    assert "late" not in {
        e for _, e, _ in selectors.served_knn(tenant_id=tid, version=model.version, vector=vector, k=50)
    }


def test_served_knn_filters_by_category_and_exclusion_and_stays_in_the_tenant(trained, tenant_b, live_db):
    tid = _tid(trained)
    model = active_model(tid)
    vector = user_interest(model, None)

    in_c2 = selectors.served_knn(tenant_id=tid, version=model.version, vector=vector, k=10, category="c2")
    assert len(in_c2) == 10 and all(int(ext[1:]) % 3 == 2 for _, ext, _ in in_c2)
    scores = [s for _, _, s in in_c2]
    assert scores == sorted(scores, reverse=True)
    excluded = {pk for pk, _, _ in in_c2[:5]}
    rest = selectors.served_knn(
        tenant_id=tid, version=model.version, vector=vector, k=10, category="c2", exclude_pks=excluded
    )
    assert len(rest) == 5 and not excluded & {pk for pk, _, _ in rest}
    # another tenant asking for this tenant's version sees nothing (its own partition is empty)
    assert (
        selectors.served_knn(tenant_id=tenant_b.tenant.id, version=model.version, vector=vector, k=10) == []
    )
    assert selectors.serving_model(tenant_b.tenant.id) is None


def test_serving_model_costs_one_pointer_read_and_is_cached(
    trained, live_db, settings, django_assert_num_queries
):
    tid = _tid(trained)
    selectors.serving_model(tid)  # weights now cached in this process

    with tenant_context(tid):  # as in a request: the view's transaction is already scoped
        with django_assert_num_queries(1):
            assert active_model(tid).version == 1
        settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 60.0}
        selectors.clear_pointer_cache()
        with django_assert_num_queries(1):
            selectors.serving_model(tid)
        with django_assert_num_queries(0):
            assert active_model(tid).version == 1


def test_user_interest_is_the_numpy_tower_over_the_profile_state(trained, live_db):
    from apps.modeling.ml.features import tower_input
    from apps.modeling.ml.inference import user_vectors
    from apps.profiles.selectors import user_state

    tid = _tid(trained)
    model = active_model(tid)
    state = user_state(tid, "u5")
    assert state is not None
    vec = user_interest(model, state)

    assert vec.shape == (model.item_dim,) and abs(np.linalg.norm(vec) - 1) < 1e-5
    np.testing.assert_allclose(vec, user_vectors(model.weights, tower_input(state, model.feature_config))[0])
    cold = user_interest(model, None)
    assert cold[384] > 0.3  # cold start leans on the DP popularity coordinate (right after the content)
    with pytest.raises(ValueError, match="rebuilt"):
        user_interest(
            model, {**state, "content_sum": state["content_sum"][:1], "weight_sum": state["weight_sum"][:1]}
        )


def test_corrupt_weights_are_refused_not_served(trained, live_db):
    from apps.modeling import artifacts

    tid = _tid(trained)
    with tenant_context(tid):
        blob = bytes(ModelVersion.objects.get(tenant_id=tid, version=1).blob)
    with pytest.raises(artifacts.ArtifactCorrupt):
        artifacts.unpack(blob[:-1] + bytes([blob[-1] ^ 1]), active_model(tid).checksum)


def test_importing_the_serving_side_does_not_import_torch():
    code = (
        "import django, sys; django.setup(); "
        "import apps.modeling.selectors, apps.modeling.services, apps.modeling.served; "
        "bad = sorted(m for m in ('torch', 'opacus') if m in sys.modules); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    import os

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PYTHONPATH": f"{ROOT}:{ROOT / 'platform'}",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_switch_to_another_feature_configuration_rebuilds_user_states(live_db, monkeypatch):
    from apps.profiles.selectors import user_state
    from tests.support import make_tenant

    persona = make_tenant("feat")
    seed_tenant(persona)
    set_modeling(persona, seed=2)
    tid = _tid(persona)
    assert training.training_run_execute(tenant_id=tid, run_id=_start(persona)) == "succeeded"
    rebuilt: list[int] = []
    real_rebuild = training.rebuild_user_states
    monkeypatch.setattr(
        training, "rebuild_user_states", lambda tenant_id: rebuilt.append(real_rebuild(tenant_id))
    )

    # same configuration as the version it replaces: no rebuild
    assert training.training_run_execute(tenant_id=tid, run_id=_start(persona)) == "succeeded"
    assert rebuilt == []
    # the active version was trained with another configuration (e.g. before a deploy): rebuild at switch
    with tenant_context(tid):
        ModelVersion.objects.filter(tenant_id=tid, version=2).update(
            feature_config={"half_life_events": [None]}
        )
    before = user_state(tid, "u3")
    assert training.training_run_execute(tenant_id=tid, run_id=_start(persona)) == "succeeded"
    assert rebuilt == [40]
    after = user_state(tid, "u3")
    assert before is not None and after is not None
    np.testing.assert_allclose(after["content_sum"], before["content_sum"], rtol=1e-9)


def test_rollback_without_a_previous_version_is_refused(live_db):
    from apps.core.errors import Conflict
    from tests.support import make_tenant

    persona = make_tenant("rb")
    with pytest.raises(Conflict, match="no previous model version"):
        services.active_model_rollback(tenant_id=_tid(persona), actor="admin:t")


def test_a_version_that_does_not_beat_dp_popularity_is_kept_inactive_with_its_reason(live_db, settings, api):
    from tests.support import make_tenant

    persona = make_tenant("gate")
    seed_tenant(persona)
    set_modeling(persona, seed=3)
    tid = _tid(persona)
    assert training.training_run_execute(tenant_id=tid, run_id=_start(persona, epsilon=4.0)) == "succeeded"
    # given a gate no model can pass (it must beat DP popularity by 1000x)
    settings.SOTTO = {**settings.SOTTO, "MODELING_GATE_MARGIN": 1000.0}
    run_id = _start(persona, epsilon=4.0)

    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "rejected"

    with tenant_context(tid):
        assert ActiveModel.objects.get(tenant_id=tid).version == 1  # v1 keeps serving
        v2 = ModelVersion.objects.get(tenant_id=tid, version=2)
        assert v2.status == "rejected" and not served.version_exists(tenant_id=tid, version=2)
        assert LedgerEntry.objects.filter(tenant_id=tid).count() == 2  # charged all the same
    body = api.get(f"/api/v1/training-runs/{run_id}", **persona.auth).json()
    assert body["status"] == "rejected" and body["progress"] == 1.0 and body["model_version"] == 2
    assert body["stage"] == "kept inactive by the gate"
    assert body["gate"]["passed"] is False and "does not beat DP popularity" in body["gate"]["reason"]
    assert body["error"] == body["gate"]["reason"]
    assert body["mechanism"].startswith("gaussian popularity + gaussian item-item gram")
    assert [m["name"] for m in body["release"]["mechanisms"]] == [
        "gaussian popularity",
        "gaussian item-item gram (DP PureSVD)",
    ]
    from apps.audit.models import AuditEvent

    with tenant_context(tid):
        assert AuditEvent.objects.filter(tenant_id=tid, action="model.reject", target_id="2").exists()


def test_a_candidate_below_the_active_version_on_the_same_users_is_rejected(live_db):
    from tests.support import make_tenant

    persona = make_tenant("gate2")
    seed_tenant(persona, n_items=300, n_users=60)  # 100 items a cluster: the holdout is not saturated
    set_modeling(persona, seed=3)
    tid = _tid(persona)
    assert training.training_run_execute(tenant_id=tid, run_id=_start(persona, epsilon=8.0)) == "succeeded"
    first = selectors.training_runs_for_tenant(tenant_id=tid)[0]
    assert first["gate"]["passed"] and "active" not in first["gate"]  # nothing to compare with yet
    # when: the same data again, with almost no budget (ε = 0.02: the noise swamps the releases) and a
    # tenant setting that drops the content block, the model's strongest signal here
    set_modeling(persona, init_content_weights=[0.0, 0.0])
    run_id = _start(persona, epsilon=0.02)
    outcome = training.training_run_execute(tenant_id=tid, run_id=run_id)

    run = selectors.training_run_get(tenant_id=tid, run_id=run_id)
    gate = run["gate"]
    assert gate["active"] == pytest.approx(first["metrics"]["recall@20_capped"])  # same holdout, same users
    assert run["metrics"]["active_version"] == 1
    assert outcome == "rejected" and not gate["passed"] and gate["candidate"] < gate["active"], gate
    with tenant_context(tid):
        assert ActiveModel.objects.get(tenant_id=tid).version == 1


# --- progress: the run's stage and a monotone fraction ---------------------------------------------


def _record_progress(monkeypatch, persona, run_id):
    """Wrap the worker's stage writer: after each write (and once before the first, for the claim's
    stage) record what the API reads back: (stage, progress, epoch)."""
    seen: list[tuple[str, float, int]] = []
    real = training._stage

    def snapshot():
        run = selectors.training_run_get(tenant_id=_tid(persona), run_id=run_id)
        seen.append((run["stage"], run["progress"], run["epoch"]))

    def recording(tenant_id, claim_, stage, **fields):
        if not seen:
            snapshot()
        real(tenant_id, claim_, stage, **fields)
        snapshot()

    monkeypatch.setattr(training, "_stage", recording)
    return seen


def test_progress_weights_are_monotone_over_the_stages_and_epochs():
    from apps.modeling import progress

    order = [
        progress.stage_progress(progress.QUEUED),
        progress.stage_progress(progress.LOADING),
        progress.stage_progress(progress.POPULARITY),
        *(progress.stage_progress(progress.sgd_stage(k, 4), k, 4) for k in range(5)),
        progress.stage_progress(progress.EVALUATION),
        progress.stage_progress(progress.MATERIALISING),
        progress.stage_progress(progress.INDEXING),
        progress.stage_progress(progress.SWITCHING),
        progress.stage_progress(progress.DONE),
    ]
    assert order == sorted(order) and order[0] == 0.0 and order[-1] == 1.0
    assert (
        progress.stage_progress(progress.GRAM)
        == progress.stage_progress(progress.sgd_stage(0, 4), 0, 4)
        == 0.10
    )
    assert progress.stage_progress(progress.sgd_stage(4, 4), 4, 4) == progress.stage_progress(
        progress.EVALUATION
    )
    assert [progress.sgd_stage(k, 3) for k in range(4)] == [
        "DP-SGD epoch 1/3",
        "DP-SGD epoch 2/3",
        "DP-SGD epoch 3/3",
        "DP-SGD epoch 3/3",
    ]
    assert (
        progress.run_progress("rejected", progress.EVALUATION)
        == progress.run_progress("succeeded", "")
        == 1.0
    )
    assert progress.run_progress("failed", progress.INDEXING) == 0.9  # a failed run stays where it stopped
    assert progress.run_progress("queued", "") == 0.0 and progress.stage_progress("something new") == 0.0


def test_a_factors_run_reports_increasing_progress_through_its_stages(live_db, monkeypatch, api):
    from tests.support import make_tenant

    persona = make_tenant("progf")
    seed_tenant(persona)
    set_modeling(persona, seed=3)  # default design "factors": no epochs; holdout 10 %
    tid = _tid(persona)
    run_id = _start(persona, epsilon=2.0)
    queued = api.get(f"/api/v1/training-runs/{run_id}", **persona.auth).json()
    assert (queued["status"], queued["stage"], queued["progress"]) == ("queued", "queued", 0.0)
    seen = _record_progress(monkeypatch, persona, run_id)

    assert training.training_run_execute(tenant_id=tid, run_id=run_id) == "succeeded"

    assert [(stage, p) for stage, p, _ in seen] == [
        ("loading data", 0.0),
        ("DP popularity release", 0.05),
        ("DP item-item Gram", 0.10),
        ("holdout evaluation", 0.65),
        ("materialising served vectors", 0.80),
        ("building HNSW index", 0.90),
        ("switching", 0.95),
    ]
    body = api.get(f"/api/v1/training-runs/{run_id}", **persona.auth).json()
    assert (body["status"], body["stage"], body["progress"]) == ("succeeded", "done", 1.0)
    assert body["epoch"] == body["epochs"] == 0


@pytest.mark.parametrize("min_interval_s", [0.0, 1e9])
def test_a_tower_run_reports_progress_per_dp_sgd_epoch(live_db, monkeypatch, api, min_interval_s):
    from tests.support import make_tenant

    monkeypatch.setattr(training, "PROGRESS_MIN_INTERVAL_S", min_interval_s)
    persona = make_tenant(f"progt{int(min_interval_s > 0)}")
    seed_tenant(persona)
    set_modeling(persona, dp_design="tower", epochs=3, seed=3, holdout_fraction=0.0)
    run_id = _start(persona, epsilon=2.0)
    seen = _record_progress(monkeypatch, persona, run_id)

    assert training.training_run_execute(tenant_id=_tid(persona), run_id=run_id) == "succeeded"

    sgd = [(stage, epoch) for stage, _, epoch in seen if stage.startswith("DP-SGD")]
    if min_interval_s == 0:  # every epoch reaches the row: epoch k+1 of 3 runs once k are done
        assert sgd == [
            ("DP-SGD epoch 1/3", 0),
            ("DP-SGD epoch 2/3", 1),
            ("DP-SGD epoch 3/3", 2),
            ("DP-SGD epoch 3/3", 3),
        ]
    else:  # throttled: fast epochs are skipped, the start and the last epoch are always written
        assert sgd == [("DP-SGD epoch 1/3", 0), ("DP-SGD epoch 3/3", 3)]
    fractions = [p for _, p, _ in seen]
    assert fractions == sorted(fractions) and len(set(fractions)) == len(fractions)  # strictly increasing
    assert [stage for stage, _, _ in seen if not stage.startswith("DP-SGD")] == [
        "loading data",
        "DP popularity release",
        "materialising served vectors",
        "building HNSW index",
        "switching",
    ]
    body = api.get(f"/api/v1/training-runs/{run_id}", **persona.auth).json()
    assert (body["status"], body["stage"], body["progress"], body["epoch"], body["epochs"]) == (
        "succeeded",
        "done",
        1.0,
        3,
        3,
    )

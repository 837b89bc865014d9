"""Privacy budget: charges before training, refusals that change nothing, an append-only ledger.

Personas: ``tenant_a`` (all-scopes key, its own budget), ``tenant_b`` (must never see A's runs),
``anon`` (no key). No worker: queued tasks are recorded by the ``queued`` fixture.
"""

from __future__ import annotations

import threading

import pytest
from django.db import DatabaseError, connection, transaction

from apps.core.tenant_db import tenant_context
from apps.modeling.budget import privacy_budget_set
from apps.modeling.models import LedgerEntry, LedgerMechanism, TrainingRun
from tests.modeling.support import seed_tenant
from tests.support import make_tenant


def _post_run(api, persona, epsilon):
    return api.post("/api/v1/training-runs", {"epsilon": epsilon}, format="json", **persona.auth)


def _ledger(tenant_id):
    with tenant_context(tenant_id):
        return list(
            LedgerEntry.objects.filter(tenant_id=tenant_id)
            .order_by("id")
            .values_list("id", "epsilon", "delta")
        )


def _runs(tenant_id):
    with tenant_context(tenant_id):
        return TrainingRun.objects.filter(tenant_id=tenant_id).count()


@pytest.fixture
def seeded_a(tenant_a):
    seed_tenant(tenant_a)
    privacy_budget_set(tenant=tenant_a.tenant, epsilon_total=5.0, delta=1e-6, actor="test")
    return tenant_a


def test_a_run_within_budget_is_charged_in_the_same_transaction_and_queued_after_commit(
    seeded_a, api, queued
):
    response = _post_run(api, seeded_a, 4.0)

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "queued" and body["epsilon"] == 4.0
    assert queued == [(seeded_a.tenant.id, body["id"])]
    with tenant_context(seeded_a.tenant.id):
        entry = LedgerEntry.objects.get(tenant_id=seeded_a.tenant.id)
        run = TrainingRun.objects.get(pk=body["id"])
    assert entry.run_id == run.pk and entry.epsilon == 4.0 and entry.kind == "training"
    # δ = min(tenant δ, 1/N_users): 40 users, tenant δ 1e-6
    assert entry.delta == pytest.approx(1e-6) and entry.users == 40
    # planned: the "factors" design (two Gaussian releases, GDP), noise fixed by (ε, δ) before training
    assert entry.details["design"] == "factors" and entry.details["composition"] == "GDP (exact)"
    assert 1 / entry.details["sigma_pop"] ** 2 + 1 / entry.details["sigma_gram"] ** 2 == pytest.approx(
        entry.details["mu_total"] ** 2
    )


def test_it_refuses_training_over_budget_and_nothing_trains_or_is_charged(seeded_a, api, queued):
    assert _post_run(api, seeded_a, 4.0).status_code == 202
    before_ledger, before_runs = _ledger(seeded_a.tenant.id), _runs(seeded_a.tenant.id)

    response = _post_run(api, seeded_a, 2.0)

    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "remaining privacy budget 1" in error["message"]
    assert error["details"]["epsilon_remaining"] == pytest.approx(1.0)
    assert _ledger(seeded_a.tenant.id) == before_ledger
    assert _runs(seeded_a.tenant.id) == before_runs
    assert len(queued) == 1  # only the first run was ever queued
    # exactly the remainder still fits
    assert _post_run(api, seeded_a, 1.0).status_code == 202


@pytest.mark.parametrize("epsilon", ["4", True, None, 0, -1, 0.0, [], {"x": 1}])
def test_bad_epsilon_is_a_400_and_charges_nothing(seeded_a, api, queued, epsilon):
    response = _post_run(api, seeded_a, epsilon)

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid"
    assert _ledger(seeded_a.tenant.id) == [] and queued == []


def test_missing_body_and_non_finite_json_are_400(seeded_a, api, queued):
    assert api.post("/api/v1/training-runs", {}, format="json", **seeded_a.auth).status_code == 400
    raw = api.post(
        "/api/v1/training-runs", '{"epsilon": NaN}', content_type="application/json", **seeded_a.auth
    )
    assert raw.status_code == 400
    raw = api.post(
        "/api/v1/training-runs", '{"epsilon": Infinity}', content_type="application/json", **seeded_a.auth
    )
    assert raw.status_code == 400
    assert _ledger(seeded_a.tenant.id) == [] and queued == []


def test_training_needs_the_train_scope_and_a_key(api, anon, live_db):
    ingest_only = make_tenant("s", scopes=["ingest", "serve"])
    assert _post_run(api, ingest_only, 1.0).status_code == 403
    assert anon.post("/api/v1/training-runs", {"epsilon": 1.0}, format="json").status_code == 401
    assert anon.get("/api/v1/privacy-budget").status_code == 401


def test_too_few_users_is_refused_without_a_charge(tenant_a, api, queued):
    response = _post_run(api, tenant_a, 1.0)  # no events at all

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_enough_users"
    assert _ledger(tenant_a.tenant.id) == [] and queued == []


def test_delta_is_capped_by_one_over_the_number_of_users(seeded_a, api, queued):
    privacy_budget_set(tenant=seeded_a.tenant, epsilon_total=5.0, delta=0.5, actor="test")

    body = _post_run(api, seeded_a, 1.0).json()

    assert body["delta"] == pytest.approx(1 / 40)
    assert _ledger(seeded_a.tenant.id)[0][2] == pytest.approx(1 / 40)


def test_concurrent_requests_cannot_both_spend_the_last_of_the_budget(seeded_a, queued):
    from apps.core.errors import Conflict
    from apps.modeling.services import training_run_start

    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def spend() -> None:
        try:
            barrier.wait(5)
            training_run_start(tenant_id=seeded_a.tenant.id, epsilon=3.0, actor="test")
            outcomes.append("ok")
        except Conflict:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=spend) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)

    assert sorted(outcomes) == ["ok", "refused"]
    assert [e[1] for e in _ledger(seeded_a.tenant.id)] == [3.0]


def test_budget_endpoint_shows_total_spent_remaining_and_entries(seeded_a, api, queued):
    _post_run(api, seeded_a, 1.5)

    body = api.get("/api/v1/privacy-budget", **seeded_a.auth).json()

    assert body["epsilon_total"] == 5.0 and body["epsilon_spent"] == 1.5 and body["epsilon_remaining"] == 3.5
    (entry,) = body["ledger"]
    assert entry["epsilon"] == 1.5 and entry["kind"] == "training" and entry["users"] == 40
    for key in ("delta", "noise_multiplier", "sampling_rate", "epochs", "clip_norm", "accountant"):
        assert key in entry
    assert (
        entry["sampling_rate"] is None and entry["accountant"] == "GDP (analytic Gaussian, exact composition)"
    )
    assert entry["mechanism"] == "pending"  # the worker has not recorded the noise yet


def test_privacy_budget_set_validates_and_is_audited(tenant_a):
    from apps.audit.models import AuditEvent
    from apps.core.errors import DomainError

    with pytest.raises(DomainError):
        privacy_budget_set(tenant=tenant_a.tenant, epsilon_total=float("inf"), delta=1e-6, actor="admin:x")
    with pytest.raises(DomainError):
        privacy_budget_set(tenant=tenant_a.tenant, epsilon_total=4.0, delta=1.5, actor="admin:x")
    privacy_budget_set(tenant=tenant_a.tenant, epsilon_total=4.0, delta=1e-7, actor="admin:x")

    with tenant_context(tenant_a.tenant.id):
        event = AuditEvent.objects.filter(tenant_id=tenant_a.tenant.id, action="privacy.budget.set").get()
    assert event.actor == "admin:x" and event.details["epsilon_total"] == "4.0"


# --- the ledger cannot be changed -----------------------------------------------------------------

MODELING_URLS = [
    "/api/v1/privacy-budget",
    "/api/v1/training-runs",
    "/api/v1/training-runs/{run}",
    "/api/v1/popularity-release",
]


def test_the_ledger_cannot_be_edited_or_deleted_through_any_api(seeded_a, api, queued):
    run_id = _post_run(api, seeded_a, 1.0).json()["id"]
    before = _ledger(seeded_a.tenant.id)

    for url in MODELING_URLS:
        for method in ("put", "patch", "delete"):
            if (url, method) == ("/api/v1/privacy-budget", "patch"):
                continue  # PATCH changes the budget *policy* (test_lifecycle.py), never the ledger
            response = getattr(api, method)(
                url.format(run=run_id), {"epsilon": 0.0}, format="json", **seeded_a.auth
            )
            assert response.status_code == 405, (method, url, response.status_code)
    # a policy PATCH naming a ledger field is refused, and no policy change touches the entries
    assert (
        api.patch("/api/v1/privacy-budget", {"epsilon": 0.0}, format="json", **seeded_a.auth).status_code
        == 400
    )
    assert (
        api.patch(
            "/api/v1/privacy-budget", {"epsilon_total": 50.0}, format="json", **seeded_a.auth
        ).status_code
        == 200
    )
    # a POST to the budget itself is not a way in either
    assert (
        api.post("/api/v1/privacy-budget", {"epsilon_total": 100}, format="json", **seeded_a.auth).status_code
        == 405
    )

    assert _ledger(seeded_a.tenant.id) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE modeling_ledgerentry SET epsilon = 0 WHERE tenant_id = %s",
        "DELETE FROM modeling_ledgerentry WHERE tenant_id = %s",
        "UPDATE modeling_ledgermechanism SET epsilon = 0 WHERE tenant_id = %s",
        "DELETE FROM modeling_ledgermechanism WHERE tenant_id = %s",
        "TRUNCATE modeling_ledgerentry CASCADE",
    ],
)
def test_the_runtime_role_cannot_update_or_delete_ledger_rows(seeded_a, api, queued, statement):
    from apps.modeling.popularity_release import popularity_release_create

    popularity_release_create(tenant_id=seeded_a.tenant.id, epsilon=0.5, actor="test")  # entry + mechanism
    before = _ledger(seeded_a.tenant.id)

    with (
        pytest.raises(DatabaseError, match=r"permission denied|append-only"),
        tenant_context(seeded_a.tenant.id),
        connection.cursor() as cursor,
    ):
        cursor.execute(statement, [seeded_a.tenant.id] if "%s" in statement else [])

    assert _ledger(seeded_a.tenant.id) == before
    with tenant_context(seeded_a.tenant.id):
        assert LedgerMechanism.objects.filter(tenant_id=seeded_a.tenant.id).count() == 1


def test_the_ledger_triggers_refuse_changes_even_for_the_table_owner(seeded_a, queued):
    """Privileges are the first lock; the triggers hold even for a role that has them (the owner)."""
    import psycopg
    from django.conf import settings

    from apps.modeling.popularity_release import popularity_release_create

    popularity_release_create(tenant_id=seeded_a.tenant.id, epsilon=0.5, actor="test")

    db = connection.settings_dict
    params = {
        "dbname": db["NAME"],
        "user": settings.DATABASE_OWNER["USER"],
        "password": settings.DATABASE_OWNER["PASSWORD"] or None,
        "host": db["HOST"] or None,
        "port": db["PORT"] or None,
    }
    with (
        psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as owner,
        pytest.raises(psycopg.Error, match="append-only"),
        owner.cursor() as cursor,
    ):
        cursor.execute("SELECT set_config('app.platform', 'on', false)")
        cursor.execute("DELETE FROM modeling_ledgerentry WHERE tenant_id = %s", [seeded_a.tenant.id])
    assert len(_ledger(seeded_a.tenant.id)) == 1


def test_another_tenants_run_is_404_like_a_missing_one(seeded_a, tenant_b, api, queued):
    run_id = _post_run(api, seeded_a, 1.0).json()["id"]

    assert api.get(f"/api/v1/training-runs/{run_id}", **seeded_a.auth).status_code == 200
    theirs = api.get(f"/api/v1/training-runs/{run_id}", **tenant_b.auth)
    missing = api.get("/api/v1/training-runs/999999999", **tenant_b.auth)
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json()["error"]["code"] == missing.json()["error"]["code"] == "not_found"
    assert api.get("/api/v1/privacy-budget", **tenant_b.auth).json()["ledger"] == []
    assert api.get("/api/v1/training-runs", **tenant_b.auth).json()["runs"] == []


# --- popularity releases --------------------------------------------------------------------------


def test_a_popularity_release_is_charged_and_then_served(seeded_a, api):
    from apps.modeling.selectors import popular_items

    assert popular_items(tenant_id=seeded_a.tenant.id, k=5) == []  # nothing released: no implicit spend
    assert _ledger(seeded_a.tenant.id) == []

    response = api.post("/api/v1/popularity-release", {"epsilon": 2.0}, format="json", **seeded_a.auth)

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["epsilon"] == 2.0 and body["users"] == 40 and body["sigma"] > 0
    assert [e[1] for e in _ledger(seeded_a.tenant.id)] == [2.0]
    top = popular_items(tenant_id=seeded_a.tenant.id, k=5)
    assert 0 < len(top) <= 5
    scores = [s for _, _, s in top]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    # filters: exclusions and categories
    first_pk = top[0][0]
    assert first_pk not in {
        pk for pk, _, _ in popular_items(tenant_id=seeded_a.tenant.id, k=5, exclude_pks=[first_pk])
    }
    in_c1 = popular_items(tenant_id=seeded_a.tenant.id, k=30, category="c1")
    assert in_c1 and all(int(ext[1:]) % 3 == 1 for _, ext, _ in in_c1)
    # over budget: refused, nothing changes
    again = api.post("/api/v1/popularity-release", {"epsilon": 3.5}, format="json", **seeded_a.auth)
    assert again.status_code == 409
    assert len(_ledger(seeded_a.tenant.id)) == 1


def test_the_budget_row_lock_is_taken_inside_the_request_transaction(seeded_a, queued):
    """A second transaction trying to charge waits for the first to commit (FOR UPDATE)."""
    from apps.modeling.services import training_run_start

    with transaction.atomic():
        training_run_start(tenant_id=seeded_a.tenant.id, epsilon=1.0, actor="test")
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND c.relname = 'modeling_privacybudget' AND l.mode = 'RowShareLock'"
            )
            assert cursor.fetchone()[0] >= 1


def test_auto_picks_the_opacus_tower_for_large_tenants_and_the_factors_below():
    from apps.core.errors import Conflict
    from apps.modeling.ml.designs import release_design
    from apps.modeling.run_config import TOWER_MIN_USERS, run_config

    small, large = run_config({}, n_users=TOWER_MIN_USERS - 1), run_config({}, n_users=TOWER_MIN_USERS)
    assert small["dp_design"] == "factors" and small["epochs"] == 0 and small["factor_rank"] == 16
    assert large["dp_design"] == "tower" and large["epochs"] >= 1 and large["factor_rank"] == 0
    assert run_config({})["dp_design"] == "factors"  # size unknown: the design that needs no minimum
    # an explicit design wins over the size; "dpsgd" (the pre-0003 name) runs the Opacus tower
    assert run_config({"dp_design": "tower"}, n_users=40)["dp_design"] == "tower"
    assert run_config({"dp_design": "dpsgd"}, n_users=40)["dp_design"] == "tower"
    assert run_config({"dp_design": "factors"}, n_users=10**6)["dp_design"] == "factors"
    # the run's ε shapes the factor design with the evaluation's schedule; tenant overrides still win
    from apps.modeling.ml.dp_factors import factor_schedule

    for eps in (1.0, 2.0, 8.0):
        shaped = run_config({}, eps)
        assert {k: shaped[k] for k in factor_schedule(eps)} == factor_schedule(eps)
    assert run_config({}, 1.0)["factor_rank"] == 4 and run_config({}, 8.0)["factor_rank"] == 16
    # a small tenant keeps the large-ε shape: a rank-4 release concentrates its noise
    assert run_config({}, 1.0, n_users=40)["factor_rank"] == 16
    assert run_config({}, 1.0, n_users=610)["factor_rank"] == 4
    assert run_config({"modeling": {"factor_rank": 8}}, 1.0)["factor_rank"] == 8
    plan = release_design(large["dp_design"]).plan(large, 4.0, 1e-6, 100_000)
    assert (
        plan["design"] == "tower" and "Opacus" in plan["mechanism"] and plan["steps"] == large["epochs"] * 49
    )
    assert plan["epsilon_pop_alone"] == pytest.approx(0.2 * 4.0)
    for bad in (
        {"dp_design": "other"},
        {"modeling": {"epochs": 3}},
        {"dp_design": "tower", "modeling": {"factor_rank": 4}},
        {"dp_design": "tower", "modeling": {"negatives": 0}},
    ):
        with pytest.raises(Conflict):
            run_config(bad)

"""Privacy & training against the real modeling app, the worker stood in for (``conftest.Runs``):
the admin starts runs with an ε, is refused over budget, polls progress stage by stage, charts the
ledger and shows the latest evaluation, all scoped to the tenant."""

from __future__ import annotations

from apps.modeling import progress


def test_an_admin_starts_a_run_with_an_epsilon_and_watches_it(signed_in, admin_a, tenant_a, runs):
    runs.prepare(tenant_a)
    client = signed_in(admin_a)
    page = client.get(f"/t/{tenant_a.slug}/privacy/")
    assert page.status_code == 200 and b'data-section="privacy"' in page.content
    started = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "1.5"})
    [(tenant_id, run_id)] = runs.queued
    assert tenant_id == tenant_a.tenant.id
    assert started.status_code == 302 and started["Location"] == f"/t/{tenant_a.slug}/training-runs/{run_id}/"
    status_url = f"/t/{tenant_a.slug}/training-runs/{run_id}/status.json"
    assert client.get(status_url).json() == {
        "id": run_id,
        "status": "queued",
        "progress": 0.0,
        "stage": "queued",
        "finished": False,
        "message": "",
    }
    assert (
        b'data-poll="' + status_url.encode() + b'"'
        in client.get(f"/t/{tenant_a.slug}/training-runs/{run_id}/").content
    )
    # the worker reports DP-SGD epoch 3 of 10 (2 done): 10 % + 55 % x 2/10
    runs.move(tenant_a, run_id, status="running", stage=progress.sgd_stage(2, 10), epoch=2, epochs=10)
    running = client.get(status_url).json()
    assert running["progress"] == 0.21 and running["stage"] == "DP-SGD epoch 3/10"
    assert b"DP-SGD epoch 3/10</span>" in client.get(f"/t/{tenant_a.slug}/training-runs/{run_id}/").content
    version = runs.succeed(tenant_a, run_id, {"recall@20": 0.081, "ndcg@20": 0.05})
    done = client.get(status_url).json()
    assert done["finished"] is True and done["progress"] == 1.0
    # the dashboard now charts the spend (the run marked with its ε) and shows its evaluation
    dashboard = client.get(f"/t/{tenant_a.slug}/")
    privacy = dashboard.context["charts"]["privacy"]
    assert privacy["total"] == 4.0 and privacy["spent"] == [0.0, 1.5]
    assert privacy["runs"] == [None, {"label": f"run #{run_id}", "epsilon": 1.5}]
    evaluation = dashboard.context["evaluation"]
    assert evaluation.metrics == {"ndcg@20": 0.05, "recall@20": 0.081}
    assert evaluation.model_version == f"v{version}"
    assert b"recall@20" in dashboard.content


def test_a_run_over_budget_is_refused_with_the_reason(signed_in, admin_a, tenant_a, runs):
    runs.prepare(tenant_a)
    client = signed_in(admin_a)
    client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "3"})
    refused = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "2"})
    assert refused.status_code == 200
    assert "exceeds the remaining privacy budget" in str(refused.context["form"].errors["epsilon"])
    assert len(runs.queued) == 1
    assert client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "-1"}).context["form"].errors


def test_another_tenants_run_is_404_under_my_slug_and_reviewers_cannot_train(
    signed_in, admin_a, admin_b, reviewer_a, tenant_a, tenant_b, runs
):
    runs.prepare(tenant_b)
    signed_in(admin_b).post(f"/t/{tenant_b.slug}/privacy/", {"epsilon": "1"})
    [(_, run_id)] = runs.queued
    client = signed_in(admin_a)
    for path in (f"training-runs/{run_id}/", f"training-runs/{run_id}/status.json"):
        assert client.get(f"/t/{tenant_a.slug}/{path}").status_code == 404
        assert client.get(f"/t/{tenant_b.slug}/{path}").status_code == 404
    reviewer = signed_in(reviewer_a)
    assert reviewer.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "1"}).status_code == 403
    assert [tenant for tenant, _ in runs.queued] == [tenant_b.tenant.id]

"""Privacy & training against the modeling contract (``apps/webadmin/contracts.py``).

The modeling app's Django side is not in the tree yet, so these tests stand in for it with an
in-memory module that keeps exactly the documented contract; they check the admin's half: the
section stays off without it, starts runs with an ε, refuses over budget, polls progress, charts
the ledger and shows the latest evaluation, all scoped to the tenant.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime

from apps.webadmin import contracts
from tests.webadmin.fake_modeling import fake_module


def test_without_the_modeling_contract_the_section_is_off(signed_in, admin_a, tenant_a, monkeypatch):
    # Given no modeling app (None in sys.modules reads as "not installed" to find_spec); the URLconf
    # is loaded first, as it is in any running process, since the API routes import the real app.
    from django.urls import get_resolver

    assert get_resolver().url_patterns
    monkeypatch.setitem(sys.modules, "apps.modeling.services", None)
    assert not contracts.MODELING.met()
    client = signed_in(admin_a)
    # then its page does not exist, the sidebar does not offer it, and the dashboard says it is to come
    assert client.get(f"/t/{tenant_a.slug}/privacy/").status_code == 404
    assert client.get(f"/t/{tenant_a.slug}/training-runs/1/").status_code == 404
    dashboard = client.get(f"/t/{tenant_a.slug}/")
    assert b'data-section="privacy"' not in dashboard.content
    assert contracts.MODELING.label in dashboard.context["pending"]
    assert "privacy" not in dashboard.context["charts"]


def test_a_half_met_contract_keeps_the_section_off(monkeypatch):
    monkeypatch.setitem(sys.modules, "apps.modeling.services", fake_module("apps.modeling.services", training_run_start=print))
    monkeypatch.setitem(sys.modules, "apps.modeling.selectors", fake_module("apps.modeling.selectors", privacy_budget=print))
    assert not contracts.MODELING.met()


def test_an_admin_starts_a_run_with_an_epsilon_and_watches_it(signed_in, admin_a, tenant_a, modeling):
    client = signed_in(admin_a)
    page = client.get(f"/t/{tenant_a.slug}/privacy/")
    assert page.status_code == 200 and b'data-section="privacy"' in page.content
    started = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "1.5"})
    assert started.status_code == 302 and started["Location"] == f"/t/{tenant_a.slug}/training-runs/1/"
    assert modeling.started == [(tenant_a.tenant.id, 1.5, f"user:{admin_a.username}")]
    status_url = f"/t/{tenant_a.slug}/training-runs/1/status.json"
    assert client.get(status_url).json() == {"id": 1, "status": "queued", "progress": 0.0, "stage": "",
                                             "finished": False, "message": ""}
    assert b'data-poll="' + status_url.encode() + b'"' in client.get(f"/t/{tenant_a.slug}/training-runs/1/").content
    modeling.runs[1].update(status="running", progress=0.4, stage="DP-SGD epoch 3/10")
    assert client.get(status_url).json()["progress"] == 0.4
    assert client.get(status_url).json()["stage"] == "DP-SGD epoch 3/10"
    assert b"DP-SGD epoch 3/10</span>" in client.get(f"/t/{tenant_a.slug}/training-runs/1/").content
    modeling.runs[1].update(
        status="succeeded", progress=1.0, finished_at=datetime(2026, 1, 1, 13, 0, tzinfo=UTC),
        metrics={"recall@20": 0.081, "ndcg@20": 0.05}, model_version="v1",
    )
    assert client.get(status_url).json()["finished"] is True
    # the dashboard now charts the spend (the run marked with its ε) and shows its evaluation
    dashboard = client.get(f"/t/{tenant_a.slug}/")
    privacy = dashboard.context["charts"]["privacy"]
    assert privacy["total"] == 4.0 and privacy["spent"] == [0.0, 1.5]
    assert privacy["runs"] == [None, {"label": "run #1", "epsilon": 1.5}]
    assert dashboard.context["evaluation"].metrics == {"ndcg@20": 0.05, "recall@20": 0.081}
    assert b"recall@20" in dashboard.content


def test_a_run_over_budget_is_refused_with_the_reason(signed_in, admin_a, tenant_a, modeling):
    client = signed_in(admin_a)
    client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "3"})
    refused = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "2"})
    assert refused.status_code == 200
    assert "would exceed the remaining budget" in str(refused.context["form"].errors["epsilon"])
    assert len(modeling.started) == 1
    assert client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "-1"}).context["form"].errors


def test_another_tenants_run_is_404_under_my_slug_and_reviewers_cannot_train(
    signed_in, admin_a, admin_b, reviewer_a, tenant_a, tenant_b, modeling
):
    signed_in(admin_b).post(f"/t/{tenant_b.slug}/privacy/", {"epsilon": "1"})
    client = signed_in(admin_a)
    for path in ("training-runs/1/", "training-runs/1/status.json"):
        assert client.get(f"/t/{tenant_a.slug}/{path}").status_code == 404
        assert client.get(f"/t/{tenant_b.slug}/{path}").status_code == 404
    reviewer = signed_in(reviewer_a)
    assert reviewer.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "1"}).status_code == 403
    assert [s[0] for s in modeling.started] == [tenant_b.tenant.id]

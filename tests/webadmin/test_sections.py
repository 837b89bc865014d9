"""Each tenant section against its real backend app: catalogue, objectives, dashboard data,
end users (pseudonyms only; decrypted data only through the audited access export), audit."""

from __future__ import annotations

import io
import json
import zipfile
from unittest import mock

from apps.core.tenant_db import tenant_context
from tests.webadmin.seed import make_items, write_latency

# --- catalogue ---------------------------------------------------------------------------------


def test_the_catalogue_searches_titles_and_shows_encoding_progress(signed_in, admin_a, tenant_a, tenant_b):
    make_items(
        tenant_a.tenant.id,
        {"1": "Toy Story", "2": "Heat", "3": "Toy Soldiers", "4": "Up"},
        encode=("1", "2"),
        fail=("4",),
    )
    make_items(tenant_b.tenant.id, {"9": "Toy Planet of tenant B"})
    client = signed_in(admin_a)
    page = client.get(f"/t/{tenant_a.slug}/catalog/")
    progress = page.context["progress"]
    assert (progress.total, progress.ready, progress.pending, progress.failed) == (4, 2, 1, 1)
    found = client.get(f"/t/{tenant_a.slug}/catalog/", {"q": "toy"})
    assert [i.title for i in found.context["page"].items] == ["Toy Story", "Toy Soldiers"]
    assert b"Toy Planet" not in found.content
    ready_only = client.get(f"/t/{tenant_a.slug}/catalog/", {"q": "toy", "status": "ready"})
    assert [i.title for i in ready_only.context["page"].items] == ["Toy Story"]


# --- objectives and dashboard data -------------------------------------------------------------


def test_an_admin_edits_an_objective_and_can_reset_it(signed_in, admin_a, tenant_a):
    from apps.slo.selectors import slo_objectives_for_tenant

    client = signed_in(admin_a)
    edit_url = f"/t/{tenant_a.slug}/slo/recommend/"
    assert client.get(edit_url).status_code == 200
    bad = client.post(
        edit_url, {"latency_threshold_ms": "80", "latency_target": "1.5", "availability_target": "0.999"}
    )
    assert bad.status_code == 200 and bad.context["form"].errors.keys() == {"latency_target"}
    ok = client.post(
        edit_url, {"latency_threshold_ms": "80", "latency_target": "0.95", "availability_target": "0.999"}
    )
    assert ok.status_code == 302
    objective = slo_objectives_for_tenant(tenant_id=tenant_a.tenant.id)["recommend"]
    assert (objective.latency_threshold_ms, objective.latency_target, objective.is_default) == (
        80.0,
        0.95,
        False,
    )
    assert objective.updated_by == f"user:{admin_a.username}"
    listing = client.get(f"/t/{tenant_a.slug}/slo/")
    assert b"p95 \xe2\x89\xa4 80 ms" in listing.content
    assert b"<td>99.9%</td>" in listing.content  # the availability target, not rounded up to 100%
    client.post(f"/t/{tenant_a.slug}/slo/recommend/reset/")
    assert slo_objectives_for_tenant(tenant_id=tenant_a.tenant.id)["recommend"].is_default
    assert client.get(f"/t/{tenant_a.slug}/slo/not-a-class/").status_code == 404


def test_the_dashboard_charts_latency_percentiles_against_the_objective(
    signed_in, admin_a, tenant_a, tenant_b
):
    write_latency(tenant_a.tenant.id, "recommend", [10.0] * 90 + [200.0] * 10, minutes_ago=5)
    write_latency(tenant_a.tenant.id, "recommend", [10.0] * 10, minutes_ago=5, status=503)
    write_latency(tenant_b.tenant.id, "recommend", [900.0] * 50, minutes_ago=5)
    response = signed_in(admin_a).get(f"/t/{tenant_a.slug}/")
    charts = response.context["charts"]
    recommend = next(s for s in charts["latency"] if s["endpoint_class"] == "recommend")
    last = [v for v in recommend["p99"] if v is not None]
    assert len(last) == 1 and 100 < last[0] < 300  # tenant B's 900 ms never leaks in
    assert next(v for v in recommend["p50"] if v is not None) < 20
    assert recommend["objective_ms"] > 0 and recommend["objective_percentile"].startswith("p")
    budgets = dict(zip(charts["error_budget"]["labels"], charts["error_budget"]["remaining"], strict=True))
    # 10 of 110 failed against 0.1 % allowed: overspent 90 times, drawn bounded at -100 %
    assert budgets["recommend availability"] == -100.0
    # no search traffic: not judged, no bar, and the reason under the chart
    assert budgets["search latency"] is None
    assert "search: not enough traffic yet (0 of 100 requests)" in charts["error_budget"]["not_judged"]
    assert b'data-testid="budget-not-judged"' in response.content
    assert b'id="dashboard-charts"' in response.content


# --- end users ----------------------------------------------------------------------------------


def test_end_users_are_listed_by_pseudonym_and_only_an_explicit_export_decrypts(
    signed_in, admin_a, tenant_a, api
):
    from apps.tenancy.pseudonyms import pseudonymise

    user_ref = "customer-4711"
    put = api.put(
        f"/api/v1/users/{user_ref}", {"attributes": {"city": "Lisbon"}}, format="json", **tenant_a.auth
    )
    assert put.status_code in (200, 201), put.content
    client = signed_in(admin_a)
    listing = client.get(f"/t/{tenant_a.slug}/users/")
    pseudonym = pseudonymise(tenant_id=tenant_a.tenant.id, user_ref=user_ref).hex()
    assert [r.pseudonym for r in listing.context["page"].rows] == [pseudonym]
    assert user_ref.encode() not in listing.content and b"Lisbon" not in listing.content
    # an export without the explicit confirmation decrypts nothing and records nothing
    with mock.patch("apps.core.audit.record") as record:
        refused = client.post(f"/t/{tenant_a.slug}/users/export/", {"user_ref": user_ref})
    assert refused.status_code == 400 and b"Lisbon" not in refused.content
    assert record.call_count == 0
    # with it, the attributes are shown, not cached, and the export is audited under the admin's name
    shown = client.post(f"/t/{tenant_a.slug}/users/export/", {"user_ref": user_ref, "confirm": "on"})
    assert shown.status_code == 200 and b"Lisbon" in shown.content
    assert shown["Cache-Control"] == "no-store"
    from apps.audit.selectors import audit_events

    with tenant_context(tenant_a.tenant.id):
        actors = list(
            audit_events(tenant_a.tenant.id, action="end_user.export").values_list("actor", "target_id")
        )
    assert actors == [(f"user:{admin_a.username}", pseudonym)]
    unknown = client.post(f"/t/{tenant_a.slug}/users/export/", {"user_ref": "nobody", "confirm": "on"})
    assert unknown.status_code == 400 and b"No data is held" in unknown.content


# --- audit --------------------------------------------------------------------------------------


def test_the_reviewer_filters_the_trail_and_sees_the_chain_verified(signed_in, reviewer_a, admin_a, tenant_a):
    signed_in(admin_a).post(f"/t/{tenant_a.slug}/keys/", {"name": "k1", "scopes": ["serve"]})
    client = signed_in(reviewer_a)
    page = client.get(f"/t/{tenant_a.slug}/audit/")
    assert page.status_code == 200
    assert page.context["verification"].ok
    by_action = client.get(f"/t/{tenant_a.slug}/audit/", {"action": "api_key.create"})
    rows = list(by_action.context["page"].object_list)
    assert {e.action for e in rows} == {"api_key.create"} and len(rows) == 2  # the fixture's key and k1
    by_prefix = client.get(f"/t/{tenant_a.slug}/audit/", {"action": "api_key."})
    assert {e.action for e in by_prefix.context["page"].object_list} == {"api_key.create"}
    by_actor = client.get(f"/t/{tenant_a.slug}/audit/", {"actor": f"user:{admin_a.username}"})
    assert {e.action for e in by_actor.context["page"].object_list} >= {"api_key.create"}
    assert all(e.actor == f"user:{admin_a.username}" for e in by_actor.context["page"].object_list)
    future = client.get(f"/t/{tenant_a.slug}/audit/", {"since": "2999-01-01"})
    assert list(future.context["page"].object_list) == []
    backwards = client.get(f"/t/{tenant_a.slug}/audit/", {"since": "2020-01-02", "until": "2020-01-01"})
    assert b"must not be after" in backwards.content


def test_the_reviewer_downloads_a_signed_bundle_and_the_verifier_that_checks_it(
    signed_in, reviewer_a, tenant_a, tmp_path
):
    import subprocess
    import sys

    from apps.audit.selectors import audit_verifier_script

    client = signed_in(reviewer_a)
    bundle = client.post(f"/t/{tenant_a.slug}/audit/export/", {})
    assert bundle.status_code == 200 and bundle["Content-Type"] == "application/zip"
    assert f"audit-{tenant_a.slug}-" in bundle["Content-Disposition"]
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["tenant"] == tenant_a.slug
    verifier = client.get(f"/t/{tenant_a.slug}/audit/verifier/")
    assert verifier.content == audit_verifier_script()
    key = client.get(f"/t/{tenant_a.slug}/audit/public-key.pem")
    assert key.content.startswith(b"-----BEGIN PUBLIC KEY-----")
    (tmp_path / "bundle.zip").write_bytes(bundle.content)
    (tmp_path / "verify.py").write_bytes(verifier.content)
    (tmp_path / "key.pem").write_bytes(key.content)
    result = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "verify.py"),
            str(tmp_path / "bundle.zip"),
            "--public-key",
            str(tmp_path / "key.pem"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # the export itself is now on the trail
    after = client.get(f"/t/{tenant_a.slug}/audit/", {"action": "audit.export"})
    assert [e.actor for e in after.context["page"].object_list] == [f"user:{reviewer_a.username}"]


def test_an_admin_who_is_not_owner_or_reviewer_cannot_open_the_audit_pages(signed_in, admin_a, tenant_a):
    client = signed_in(admin_a)
    assert client.get(f"/t/{tenant_a.slug}/audit/").status_code == 403
    assert client.post(f"/t/{tenant_a.slug}/audit/export/").status_code == 403


# --- privacy & training (the real modeling app) ---------------------------------------------------


def test_an_admin_trains_with_an_epsilon_and_the_dashboard_shows_the_spend_and_evaluation(
    signed_in, admin_a, admin_b, tenant_a, tenant_b, monkeypatch
):
    from apps.modeling import training
    from tests.modeling.support import seed_tenant, set_modeling

    # Given a tenant with items, vectors and 40 users' events (the worker is stood in for below)
    seed_tenant(tenant_a)
    set_modeling(tenant_a, seed=7)
    queued: list[tuple[int, int]] = []
    monkeypatch.setattr(
        "apps.modeling.services._enqueue", lambda tenant_id, run_id: queued.append((tenant_id, run_id))
    )
    client = signed_in(admin_a)
    # when the admin starts a run with ε 2
    started = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "2"})
    assert started.status_code == 302
    [(tenant_id, run_id)] = queued
    assert (
        tenant_id == tenant_a.tenant.id
        and started["Location"] == f"/t/{tenant_a.slug}/training-runs/{run_id}/"
    )
    status_url = f"/t/{tenant_a.slug}/training-runs/{run_id}/status.json"
    assert client.get(status_url).json()["status"] == "queued"
    # and the worker trains it
    assert training.training_run_execute(tenant_id=tenant_id, run_id=run_id) == "succeeded"
    done = client.get(status_url).json()
    assert done["status"] == "succeeded" and done["finished"] and done["progress"] == 1.0
    # then the dashboard charts the spend with the run marked by its ε, and shows the evaluation
    dashboard = client.get(f"/t/{tenant_a.slug}/")
    privacy = dashboard.context["charts"]["privacy"]
    assert privacy["spent"][-1] == 2.0 and {"label": f"run #{run_id}", "epsilon": 2.0} in privacy["runs"]
    assert "recall@20" in dashboard.context["evaluation"].metrics
    # a run that would exceed the budget is refused with the reason, and charges nothing
    refused = client.post(f"/t/{tenant_a.slug}/privacy/", {"epsilon": "99"})
    assert refused.status_code == 200 and refused.context["form"].errors["epsilon"]
    assert len(queued) == 1
    # and tenant B's admin cannot see this run, by either slug
    other = signed_in(admin_b)
    assert other.get(f"/t/{tenant_a.slug}/training-runs/{run_id}/").status_code == 404
    assert other.get(f"/t/{tenant_b.slug}/training-runs/{run_id}/status.json").status_code == 404

"""The admin in a real browser: Debian's headless Chromium driven by Playwright against a real
HTTP server on the test database. Each role signs in and does its main work; every page visited
is saved under var/screenshots/."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile

import pytest

from tests.support import unique_slug

pytestmark = pytest.mark.browser


def open_section(page, key: str) -> None:
    """Click a sidebar link and wait for that page (not just for the click)."""
    with page.expect_navigation():
        page.click(f"nav [data-section={key}]")


def api_status(base: str, raw_key: str) -> int:
    url = f"{base}/api/v1/tenant"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {raw_key}"})  # noqa: S310 - 127.0.0.1
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own 127.0.0.1 server
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_an_admin_creates_a_key_sees_it_once_and_revokes_it(page, live_url, sign_in, shot, admin_a, tenant_a):
    sign_in(page, admin_a)
    assert page.url.endswith(f"/t/{tenant_a.slug}/")
    assert page.inner_text("[data-testid=role]") == "admin"
    open_section(page, "keys")
    shot(page, "keys")
    page.fill("#id_name", "checkout service")
    page.check("input[name=scopes][value=ingest]")
    page.click("[data-testid=key-create] button[type=submit]")
    raw = page.inner_text("[data-testid=raw-key]").strip()
    assert raw.startswith("sotto_")
    shot(page, "key-created")
    assert api_status(live_url, raw) == 200
    # the secret is gone from the page once it is left
    page.goto(f"/t/{tenant_a.slug}/keys/")
    assert raw not in page.content()
    prefix = raw.split("_")[1]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click(f"tr[data-prefix='{prefix}'] button:has-text('Revoke')")
    page.wait_for_selector(".messages li.success")
    assert "is revoked" in page.inner_text(".messages")
    assert page.inner_text(f"tr[data-prefix='{prefix}'] .badge.bad") == "revoked"
    shot(page, "key-revoked")
    assert api_status(live_url, raw) == 401


def test_dismissing_the_confirmation_keeps_the_key(page, sign_in, admin_a, tenant_a):
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.selectors import api_keys_for_tenant

    sign_in(page, admin_a)
    page.goto(f"/t/{tenant_a.slug}/keys/")
    asked: list[str] = []

    def dismiss(dialog):
        asked.append(dialog.message)
        dialog.dismiss()

    page.once("dialog", dismiss)
    page.click("tbody tr:first-child button:has-text('Revoke')")
    page.wait_for_timeout(500)
    assert len(asked) == 1 and asked[0].startswith("Revoke")
    with tenant_context(tenant_a.tenant.id):
        assert not api_keys_for_tenant(tenant_id=tenant_a.tenant.id).filter(revoked_at__isnull=False).exists()


def test_tenant_a_admin_cannot_reach_tenant_b(page, sign_in, shot, admin_a, tenant_a, tenant_b):
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.selectors import api_keys_for_tenant

    with tenant_context(tenant_b.tenant.id):
        b_key = api_keys_for_tenant(tenant_id=tenant_b.tenant.id).get()
    sign_in(page, admin_a)
    for path in (
        f"/t/{tenant_b.slug}/",
        f"/t/{tenant_b.slug}/keys/",
        f"/t/{tenant_a.slug}/keys/{b_key.pk}/revoke/",
    ):
        response = page.goto(path)
        assert response.status == 404, path
        assert page.inner_text("h1") == "Not found"
    shot(page, "other-tenant-404")
    assert b_key.prefix not in page.content()


def test_a_reviewer_is_refused_admin_pages_with_403(page, sign_in, shot, reviewer_a, tenant_a):
    sign_in(page, reviewer_a)
    assert page.locator("nav [data-section=keys]").count() == 0
    response = page.goto(f"/t/{tenant_a.slug}/keys/")
    assert response.status == 403
    assert "reviewer" in page.inner_text("main, body")
    shot(page, "reviewer-403")


def test_failed_sign_ins_lock_the_form_with_a_clear_message(page, shot, admin_a, settings):
    page.goto("/login/")
    shot(page, "login")
    for i in range(settings.SOTTO["LOGIN_MAX_FAILURES"]):
        page.fill("#id_username", admin_a.username)
        page.fill("#id_password", f"wrong-{i}")
        with page.expect_navigation():
            page.click("button[type=submit]")
    assert "Too many failed sign-ins" in page.inner_text("[data-testid=locked]")
    shot(page, "login-locked")


def test_signing_out_uses_a_post_form(page, sign_in, admin_a):
    sign_in(page, admin_a)
    page.click("[data-testid=sign-out]")
    page.wait_for_url("**/login/")
    assert "You have signed out" in page.inner_text(".messages")
    assert page.goto("/").url.endswith("/login/?next=/")


def test_the_dashboard_draws_its_charts_with_data(page, sign_in, shot, admin_a, tenant_a):
    from tests.webadmin.seed import make_items, write_latency

    for minutes_ago, slow in ((150, 120.0), (90, 180.0), (30, 240.0)):
        write_latency(tenant_a.tenant.id, "recommend", [12.0] * 95 + [slow] * 5, minutes_ago=minutes_ago)
        write_latency(tenant_a.tenant.id, "search", [30.0] * 99 + [slow] * 1, minutes_ago=minutes_ago)
    make_items(tenant_a.tenant.id, {"1": "Alpha", "2": "Beta", "3": "Gamma"}, encode=("1", "2"))
    sign_in(page, admin_a)
    page.wait_for_selector("canvas[data-chart=latency][data-rendered=true]")
    drawn = page.evaluate(
        """() => Array.from(document.querySelectorAll('canvas[data-rendered=true]')).map(c => {
               const chart = Chart.getChart(c);
               return {kind: c.dataset.chart, points: chart.data.datasets[0].data.filter(v => v !== null).length,
                       datasets: chart.data.datasets.map(d => d.label)};
           })"""
    )
    kinds = {d["kind"] for d in drawn}
    assert {"latency", "error_budget"} <= kinds
    recommend = drawn[0]
    assert recommend["points"] == 3 and any(label.startswith("objective") for label in recommend["datasets"])
    assert "encoding" in kinds
    shot(page, "dashboard")


def test_an_admin_tightens_an_objective(page, sign_in, shot, admin_a, tenant_a):
    sign_in(page, admin_a)
    open_section(page, "slo")
    shot(page, "objectives")
    page.click("tr[data-class=search] a:has-text('Edit')")
    page.fill("#id_latency_threshold_ms", "75")
    page.fill("#id_latency_target", "0.95")
    shot(page, "objective-edit")
    page.click("[data-testid=objective-form] button[type=submit]")
    page.wait_for_selector(".messages li.success")
    assert "p95 ≤ 75 ms" in page.inner_text("tr[data-class=search]")


def test_a_range_button_redraws_the_latency_charts_in_place(page, sign_in, shot, admin_a, tenant_a):
    from tests.webadmin.seed import write_latency

    write_latency(tenant_a.tenant.id, "recommend", [12.0] * 100, minutes_ago=5)
    write_latency(tenant_a.tenant.id, "recommend", [40.0] * 50, minutes_ago=3 * 24 * 60)  # only in 7 d
    sign_in(page, admin_a)
    page.goto(f"/t/{tenant_a.slug}/slo/")
    page.wait_for_selector("canvas[data-chart=latency][data-index='0'][data-rendered=true]")
    drawn = """() => { const c = document.querySelector("canvas[data-chart=latency][data-index='0']");
                       const chart = Chart.getChart(c);
                       return {range: c.dataset.range, labels: chart.data.labels.length,
                               points: chart.data.datasets[0].data.filter(v => v !== null).length}; }"""
    assert page.evaluate(drawn) == {"range": "24h", "labels": 24, "points": 1}
    page.evaluate("() => { window.sottoSamePage = true; }")  # gone if the page were loaded again
    page.click("[data-range-selector] a[data-range='7d']")
    page.wait_for_selector("canvas[data-chart=latency][data-index='0'][data-range='7d']")
    assert page.evaluate(drawn) == {"range": "7d", "labels": 28, "points": 2}
    assert page.evaluate("() => window.sottoSamePage === true"), (
        "redrawn in place, not by loading the page again"
    )
    assert page.url.endswith("?range=7d")
    assert page.get_attribute("[data-range-selector] a[data-range='7d']", "aria-current") == "true"
    assert page.inner_text("[data-requests-index='0']") == "150 requests in 7d"
    shot(page, "objectives-7d")


def test_an_admin_searches_the_catalogue(page, sign_in, shot, admin_a, tenant_a):
    from tests.webadmin.seed import make_items

    make_items(tenant_a.tenant.id, {"1": "Toy Story", "2": "Heat", "3": "Toy Soldiers"}, encode=("1",))
    sign_in(page, admin_a)
    open_section(page, "catalog")
    assert page.inner_text("[data-testid=items-total]") == "3"
    page.fill("#id_q", "toy")
    with page.expect_navigation():
        page.click("[data-testid=catalog-search] button")
    titles = page.locator("[data-testid=items-table] tbody tr td:nth-child(2)").all_inner_texts()
    assert titles == ["Toy Story", "Toy Soldiers"]
    shot(page, "catalogue")


def test_an_admin_sees_pseudonyms_and_decrypts_only_after_confirming(
    page, sign_in, shot, admin_a, tenant_a, api
):
    api.put("/api/v1/users/reader-17", {"attributes": {"plan": "gold"}}, format="json", **tenant_a.auth)
    sign_in(page, admin_a)
    open_section(page, "users")
    assert "reader-17" not in page.content() and "gold" not in page.content()
    shot(page, "end-users")
    page.fill("#id_user_ref", "reader-17")
    page.check("#id_confirm")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=access-export] button[type=submit]")
    page.wait_for_selector("[data-testid=export-attributes]")
    assert "gold" in page.inner_text("[data-testid=export-attributes]")
    shot(page, "access-export")


def test_the_training_page_follows_a_run_step_by_step(page, sign_in, shot, admin_a, tenant_a, runs):
    # The real modeling app charges and records the run; the worker is stood in for, so the test
    # moves the run's row itself and sees each state in the page; the browser, server and JS are real.
    from apps.modeling import progress

    runs.prepare(tenant_a)
    sign_in(page, admin_a)
    open_section(page, "privacy")
    page.fill("#id_epsilon", "1.5")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=training-form] button[type=submit]")
    page.wait_for_url("**/training-runs/*/")
    [(_, run_id)] = runs.queued
    assert page.url.endswith(f"/training-runs/{run_id}/")
    assert page.get_attribute("[data-testid=run-progress]", "data-status") == "queued"
    runs.move(tenant_a, run_id, status="running", stage=progress.EVALUATION)
    page.wait_for_selector("[data-testid=run-progress][data-status=running]")
    assert page.inner_text("[data-field=percent]") == "65%"
    shot(page, "training-run")
    runs.succeed(tenant_a, run_id, {"recall@20": 0.081})
    page.wait_for_selector("[data-testid=run-metrics]")  # the page reloads itself when the run is done
    open_section(page, "privacy")
    page.wait_for_selector("canvas[data-chart=privacy][data-rendered=true]")
    spent = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-chart=privacy]')).data.datasets[0].data"
    )
    assert spent == [0, 1.5]
    assert page.inner_text("[data-testid=epsilon-left]") == "ε 2.50"
    shot(page, "privacy")


@pytest.mark.worker
def test_an_admin_starts_a_real_training_run_and_watches_the_worker_finish_it(
    page, sign_in, shot, admin_a, tenant_a, celery_worker_proc
):
    from tests.modeling.support import seed_tenant, set_modeling

    seed_tenant(tenant_a)
    set_modeling(tenant_a, seed=7)
    sign_in(page, admin_a)
    open_section(page, "privacy")
    page.fill("#id_epsilon", "2")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("[data-testid=training-form] button[type=submit]")
    page.wait_for_url("**/training-runs/*/")
    assert page.get_attribute("[data-testid=run-progress]", "data-status") in ("queued", "running")
    shot(page, "real-run-started")
    # the page polls the run and reloads itself once the worker is done
    page.wait_for_selector("[data-testid=run-metrics]", timeout=240_000)
    assert page.inner_text("[data-testid=run-progress] [data-field=status]") == "succeeded"
    assert "recall@20" in page.inner_text("[data-testid=run-metrics]")
    shot(page, "real-run-succeeded")
    open_section(page, "dashboard")
    page.wait_for_selector("canvas[data-chart=privacy][data-rendered=true]")
    spent = page.evaluate(
        "() => Chart.getChart(document.querySelector('canvas[data-chart=privacy]')).data.datasets[0].data"
    )
    assert spent[-1] == 2
    assert "recall@20" in page.inner_text("[data-testid=evaluation]")
    shot(page, "dashboard-after-training")


def test_a_reviewer_checks_the_chain_exports_a_bundle_and_gets_the_verifier(
    page, sign_in, shot, reviewer_a, tenant_a, tmp_path
):
    from apps.audit.selectors import audit_verifier_script

    sign_in(page, reviewer_a)
    open_section(page, "audit")
    assert "Chain intact" in page.inner_text("[data-testid=verification]")
    page.fill("#id_action", "api_key.")
    with page.expect_navigation():
        page.click("[data-testid=audit-filters] button[type=submit]")
    assert set(page.locator("[data-testid=audit-table] tbody .badge").all_inner_texts()) == {"api_key.create"}
    shot(page, "audit")
    with page.expect_download() as download_info:
        page.click("[data-testid=audit-export] button[type=submit]")
    bundle = download_info.value
    assert bundle.suggested_filename.startswith(
        f"audit-{tenant_a.slug}-"
    ) and bundle.suggested_filename.endswith(".zip")
    bundle.save_as(tmp_path / "bundle.zip")
    with zipfile.ZipFile(io.BytesIO((tmp_path / "bundle.zip").read_bytes())) as archive:
        assert json.loads(archive.read("manifest.json"))["tenant"] == tenant_a.slug
    with page.expect_download() as verifier_info:
        page.click("[data-testid=verifier-link]")
    verifier_info.value.save_as(tmp_path / "verify.py")
    assert (tmp_path / "verify.py").read_bytes() == audit_verifier_script()


def test_the_operator_creates_a_tenant_adds_its_owner_and_checks_health(page, sign_in, shot, operator):
    sign_in(page, operator)
    shot(page, "operator-home")
    page.goto("/platform/")
    slug = unique_slug("shop")
    page.fill("#id_slug", slug)
    page.fill("#id_name", "Corner Shop")
    page.click("[data-testid=tenant-create] button[type=submit]")
    page.wait_for_url("**/platform/memberships/")
    assert f"Tenant {slug} created" in page.inner_text(".messages")
    owner = unique_slug("owner")
    page.select_option("#id_tenant", slug)
    page.fill("#id_username", owner)
    page.select_option("#id_role", "owner")
    page.fill("#id_password", "correct-horse-battery-9")
    page.click("[data-testid=membership-form] button[type=submit]")
    page.wait_for_selector(".messages li.success")
    assert owner in page.inner_text("[data-testid=memberships-table]")
    shot(page, "memberships")
    page.goto("/platform/")
    assert slug in page.inner_text("[data-testid=tenants-table]")
    shot(page, "tenants")
    open_section(page, "health")
    assert "ok" in page.inner_text("[data-testid=check-database]")
    shot(page, "health")


def test_an_admin_rolls_back_a_version_and_sets_the_budget_policy_and_schedule(
    page, sign_in, shot, admin_a, tenant_a
):
    from apps.core.tenant_db import tenant_context
    from apps.modeling import services, training
    from apps.modeling.models import ActiveModel
    from tests.modeling.support import seed_tenant, set_modeling

    seed_tenant(tenant_a)
    set_modeling(tenant_a, seed=7)
    original = services._enqueue
    services._enqueue = lambda tenant_id, run_id: None
    try:
        for _ in range(2):
            run = services.training_run_start(tenant_id=tenant_a.tenant.id, epsilon=4.0, actor="test")
            assert (
                training.training_run_execute(tenant_id=tenant_a.tenant.id, run_id=run["id"]) == "succeeded"
            )
    finally:
        services._enqueue = original

    sign_in(page, admin_a)
    open_section(page, "privacy")
    assert page.get_attribute("[data-testid=left-bar]", "data-percent") == "50"  # 8 of 16 left, not 8 spent
    assert "lifetime" in page.inner_text("[data-testid=budget-policy]")
    open_section(page, "model")
    assert page.inner_text("tr[data-version='2'] [data-field=status]") == "active"
    assert page.inner_text("tr[data-version='1'] [data-field=status]") == "previous"
    shot(page, "model-versions")
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("tr[data-version='1'] button:has-text('Roll back')")
    page.wait_for_selector(".messages li.success")
    assert "Version 1 is now serving" in page.inner_text(".messages")
    assert page.inner_text("tr[data-version='1'] [data-field=status]") == "active"
    with tenant_context(tenant_a.tenant.id):
        assert ActiveModel.objects.get(tenant_id=tenant_a.tenant.id).version == 1

    # a daily schedule on a lifetime budget is refused with the reason, nothing saved
    page.select_option("#id_cadence", "daily")
    page.click("[data-testid=settings-form] button[type=submit]")
    page.wait_for_selector(".form-errors")
    assert "lifetime budget" in page.inner_text(".form-errors")
    # a 30-day renewal window and a weekly schedule that fits it
    page.fill("#id_renewal_days", "30")
    page.select_option("#id_cadence", "weekly")
    page.fill("#id_epsilon_per_run", "2")
    with page.expect_navigation():
        page.click("[data-testid=settings-form] button[type=submit]")
    assert "Settings saved" in page.inner_text(".messages")
    assert page.input_value("#id_renewal_days") == "30" and page.input_value("#id_cadence") == "weekly"
    shot(page, "model-settings")
    open_section(page, "privacy")
    assert "per rolling 30 days" in page.inner_text("[data-testid=budget-policy]")
    # the two runs were charged under the lifetime budget: they keep counting, nothing renews
    assert page.inner_text("[data-testid=epsilon-left]") == "ε 8.00"
    assert not page.is_visible("[data-testid=next-renewal]")


def test_an_admin_previews_what_one_user_is_recommended(page, sign_in, shot, admin_a, tenant_a, api):
    from tests.webadmin.seed import make_items, rate_items

    titles = {str(i): f"Item number {i}" for i in range(1, 21)}
    make_items(tenant_a.tenant.id, titles, encode=tuple(titles))
    rate_items(api, tenant_a, "reader-88", {"2": 5.0, "5": 4.5})
    from_api = api.get("/api/v1/recommendations", {"user": "reader-88"}, **tenant_a.auth).json()
    sign_in(page, admin_a)
    open_section(page, "users")
    page.fill("#id_preview-user_ref", "reader-88")
    with page.expect_navigation():
        page.click("[data-testid=preview-form] button[type=submit]")
    rows = page.locator("[data-testid=preview-items] tbody tr")
    assert rows.evaluate_all("rows => rows.map(r => r.dataset.item)") == [i["id"] for i in from_api["items"]]
    assert page.locator("[data-testid=preview-items] tbody tr td:nth-child(3)").all_inner_texts() == [
        titles[i["id"]] for i in from_api["items"]
    ]
    assert page.inner_text("[data-testid=preview-strategy]") == from_api["strategy"] == "content"
    shot(page, "recommendation-preview")


def test_the_audit_table_fits_its_panel_and_long_details_expand(page, sign_in, shot, reviewer_a, tenant_a):
    from apps.core import audit
    from apps.core.tenant_db import tenant_context

    with tenant_context(tenant_a.tenant.id):
        audit.record(
            tenant_id=tenant_a.tenant.id,
            actor="user:" + "someone-with-a-long-name" * 3,
            action="end_user.export",
            target_type="end_user",
            target_id="ab" * 32,
            details={"note": "x" * 300, "hash": "cd" * 32, "attributes_decrypted": 3},
        )
    sign_in(page, reviewer_a)
    open_section(page, "audit")
    widths = page.evaluate("""() => {
        const table = document.querySelector('[data-testid=audit-table]');
        const panel = table.closest('.panel');
        return {table: table.scrollWidth, wrap: table.parentElement.clientWidth,
                panel: panel.scrollWidth, panelBox: panel.clientWidth};
    }""")
    # nothing scrolls sideways: the table is as wide as its panel, long values are clipped or wrapped
    assert widths["table"] <= widths["wrap"] and widths["panel"] <= widths["panelBox"], widths
    summary = page.locator("[data-testid=audit-table] details.cell summary").first
    assert "x" * 300 in (summary.get_attribute("title") or "")
    summary.click()
    assert "x" * 300 in page.inner_text("[data-testid=audit-table] details.cell[open] pre")
    shot(page, "audit-fits")

"""The objectives page: verdicts a reader can act on (not judged yet, exhausted), and latency charts
over a chosen range (``?range=``), reloaded as JSON by the range buttons (``slo/series.json``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.webadmin.seed import write_latency


def recommend(charts: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in charts["latency"] if s["endpoint_class"] == "recommend")


@pytest.fixture
def traffic(tenant_a: Any) -> str:
    """Tenant A's recommendations: 100 requests five minutes ago and 50 three days ago."""
    write_latency(tenant_a.tenant.id, "recommend", [10.0] * 100, minutes_ago=5)
    write_latency(tenant_a.tenant.id, "recommend", [20.0] * 50, minutes_ago=3 * 24 * 60)
    return str(tenant_a.slug)


@pytest.mark.parametrize(
    ("asked", "shown", "points", "requests"),
    [
        (None, "24h", 24, 100),
        ("1h", "1h", 60, 100),
        ("6h", "6h", 72, 100),
        ("7d", "7d", 28, 150),
        ("28d", "28d", 28, 150),
    ],
)
def test_the_page_charts_latency_over_the_range_asked_for(
    signed_in, admin_a, traffic, asked, shown, points, requests
):
    page = signed_in(admin_a).get(f"/t/{traffic}/slo/", {"range": asked} if asked else {})
    assert page.status_code == 200
    charts = page.context["charts"]
    assert charts["range"] == shown and page.context["range"] == shown
    series = recommend(charts)
    assert len(series["labels"]) == len(series["p99"]) == points
    assert series["requests"] == requests
    assert {s["endpoint_class"] for s in charts["latency"]} == {
        "recommend",
        "search",
        "ingest",
        "ingest_batch",
        "other",
    }
    assert f'data-range="{shown}" class="button small" aria-current="true"'.encode() in page.content
    assert b'id="dashboard-charts"' in page.content


def test_a_range_that_does_not_exist_shows_the_default_on_the_page(signed_in, admin_a, traffic):
    page = signed_in(admin_a).get(f"/t/{traffic}/slo/", {"range": "<b>forever</b>"})
    assert page.status_code == 200
    assert page.context["charts"]["range"] == "24h"
    assert b"There is no time range" in page.content and b"<b>forever</b>" not in page.content


def test_the_range_buttons_load_json_and_an_unknown_range_is_a_400(signed_in, admin_a, traffic):
    client = signed_in(admin_a)
    week = client.get(f"/t/{traffic}/slo/series.json", {"range": "7d"})
    assert week.status_code == 200 and week["Content-Type"] == "application/json"
    body = week.json()
    assert body["range"] == "7d" and body["step_s"] == 6 * 3600 and recommend(body)["requests"] == 150
    assert client.get(f"/t/{traffic}/slo/series.json").json()["range"] == "24h"
    for bad in ("30d", "", "7D", "1h;drop", "9" * 5000):
        refused = client.get(f"/t/{traffic}/slo/series.json", {"range": bad})
        if bad == "":
            assert refused.status_code == 200  # empty means "the default", as on the page
            continue
        assert refused.status_code == 400, bad
        assert refused.json()["error"]["code"] == "invalid"


def test_the_table_says_not_enough_traffic_and_exhausted_instead_of_a_huge_negative(
    signed_in, admin_a, tenant_a
):
    write_latency(
        tenant_a.tenant.id, "recommend", [300.0] * 100, minutes_ago=5
    )  # all slow: judged, spent 100x
    write_latency(tenant_a.tenant.id, "search", [300.0] * 5, minutes_ago=5)  # five cold requests
    page = signed_in(admin_a).get(f"/t/{tenant_a.slug}/slo/")
    rows = {r["cls"]: r["state"] for r in page.context["rows"]}
    assert rows["recommend"].verdict == "budget_exhausted" and rows["search"].verdict == "not_enough_traffic"
    html = page.content.decode()
    recommend_row = html.split('data-class="recommend"')[1].split("</tr>")[0]
    search_row = html.split('data-class="search"')[1].split("</tr>")[0]
    assert (
        ">exhausted</span>" in recommend_row and "-9900" in recommend_row
    )  # the raw figure, in the tooltip only
    assert ">-9900" not in recommend_row
    assert "not enough traffic yet (5 of 100 requests)" in search_row and "exhausted" not in search_row

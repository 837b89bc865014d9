"""Issue 18 item 5, the admin's polish: rounded figures, API keys by name, an audit table that fits,
the access export as a download, HTML 404 pages (JSON kept under /api/), the per-user
recommendation preview and catalogue search by meaning; each against the real apps."""

from __future__ import annotations

import json
from unittest import mock

import pytest

from apps.core.tenant_db import tenant_context
from apps.webadmin import formatting
from tests.webadmin.seed import make_items, rate_items


def audit_rows(tenant_id: int, action: str) -> list[tuple[str, str]]:
    from apps.audit.selectors import audit_events

    with tenant_context(tenant_id):
        return list(audit_events(tenant_id, action=action).values_list("actor", "target_id"))


# --- 1. figures rounded ---------------------------------------------------------------------------


def test_the_docstring_examples_hold():
    import doctest

    from apps.webadmin.views import errors

    for module in (formatting, errors):
        failures, tried = doctest.testmod(module)
        assert tried > 0 and failures == 0, module.__name__


@pytest.mark.parametrize(
    ("value", "digits", "shown"),
    [
        (0.08234567891, 4, "0.08235"),
        (0.123456789, 4, "0.1235"),
        (1.0, 4, "1"),
        (12345.678, 4, "12346"),
        (0.000012345, 4, "1.234e-5"),
        (9.99996, 4, "10"),
        (-0.5, 3, "-0.5"),
        (0, 4, "0"),
        (3, 4, "3"),
        (0.33333333, 3, "0.333"),
        ("n/a", 4, "n/a"),
        (None, 4, ""),
        (True, 4, "True"),
    ],
)
def test_metrics_keep_a_few_significant_digits(value, digits, shown):
    assert formatting.significant(value, digits) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (2, "2.00"),
        (1 / 3, "0.33"),
        (2.499999, "2.50"),
        (0.001234, "0.0012"),
        (0.0, "0.00"),
        (None, ""),
    ],
)
def test_epsilon_has_two_decimals(value, shown):
    assert formatting.epsilon(value) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.5, "50.0%"),
        (0.999, "99.9%"),
        (0.9995, "99.95%"),
        (0.99999, "99.999%"),
        (1.0, "100.0%"),
        (-0.5, "-50.0%"),
        (0.123456, "12.3%"),
        (0.00001, "0.001%"),
        (0.0, "0.0%"),
        ("x", ""),
    ],
)
def test_percentages_have_one_decimal_but_never_round_to_the_bounds(value, shown):
    assert formatting.percent(value) == shown


def test_delta_is_short_scientific():
    assert [formatting.delta(v) for v in (1e-05, 1e-6, 0.0016393442622950820, 0, None)] == [
        "1e-5",
        "1e-6",
        "1.6e-3",
        "0",
        "",
    ]


def test_the_privacy_and_run_pages_round_epsilon_delta_and_metrics(signed_in, admin_a, tenant_a, runs):
    runs.prepare(tenant_a)
    run = runs.start(tenant_a, 1 / 3)
    runs.move(
        tenant_a,
        run["id"],
        status="succeeded",
        metrics={"recall@20": 0.123456789, "coverage": 1.23456e-05, "users": 610},
    )
    client = signed_in(admin_a)
    privacy = client.get(f"/t/{tenant_a.slug}/privacy/").content.decode()
    assert "δ 1e-6" in privacy and "1e-06" not in privacy
    assert (
        'data-testid="epsilon-spent">ε 0.33<' in privacy and 'data-testid="epsilon-left">ε 3.67<' in privacy
    )
    assert '<td class="num">0.33</td>' in privacy  # the run's ε in the table
    page = client.get(f"/t/{tenant_a.slug}/training-runs/{run['id']}/").content.decode()
    assert ">0.1235</td>" in page and ">1.235e-5</td>" in page and ">610</td>" in page
    assert "0.123456789" not in page.replace('title="0.123456789"', "")
    assert "ε 0.33 charged" in page


# --- 2. API keys by name ---------------------------------------------------------------------------


def test_keys_are_listed_by_name_with_the_prefix_beside_it(signed_in, admin_a, tenant_a):
    from apps.tenancy.services import api_key_create

    key = api_key_create(tenant=tenant_a.tenant, name="Checkout backend", scopes=["serve"], actor="test").key
    listing = signed_in(admin_a).get(f"/t/{tenant_a.slug}/keys/").content.decode()
    row = listing[listing.index(f'data-prefix="{key.prefix}"') :]
    row = row[: row.index("</tr>")]
    assert '<div class="key-name" data-field="name">Checkout backend</div>' in row
    assert 'data-field="prefix"' in row and f">{key.prefix}</div>" in row


def test_the_audit_trail_names_the_api_key_that_acted(signed_in, reviewer_a, tenant_a, api):
    from apps.tenancy.services import api_key_create

    issued = api_key_create(tenant=tenant_a.tenant, name="Checkout backend", scopes=["ingest"], actor="test")
    put = api.put(
        "/api/v1/users/shopper-1",
        {"attributes": {"city": "Porto"}},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {issued.raw}",
    )
    assert put.status_code in (200, 201), put.content
    response = signed_in(reviewer_a).get(
        f"/t/{tenant_a.slug}/audit/", {"action": "end_user.attributes.replace"}
    )
    [row] = response.context["rows"]
    assert row.event.actor == f"key:{issued.key.prefix}" and row.actor_key_name == "Checkout backend"
    html = response.content.decode()
    assert f'title="API key Checkout backend (key:{issued.key.prefix})">Checkout backend</span>' in html
    # and the key's own creation row names it as its target
    created = signed_in(reviewer_a).get(f"/t/{tenant_a.slug}/audit/", {"action": "api_key.create"})
    assert "Checkout backend" in {r.target_key_name for r in created.context["rows"]}


def test_the_dashboard_lists_the_active_keys_by_name(signed_in, admin_a, tenant_a):
    from apps.tenancy.services import api_key_create, api_key_revoke

    api_key_create(tenant=tenant_a.tenant, name="Mobile app", scopes=["serve"], actor="test")
    gone = api_key_create(tenant=tenant_a.tenant, name="Old server", scopes=["serve"], actor="test").key
    api_key_revoke(tenant=tenant_a.tenant, key_id=gone.pk, actor="test")
    response = signed_in(admin_a).get(f"/t/{tenant_a.slug}/")
    assert response.context["active_keys"] == 2  # the persona's "test" key and "Mobile app"
    assert [k.name for k in response.context["key_names"]] == ["Mobile app", "test"]
    assert b"Old server" not in response.content


# --- 3. an audit table that fits -------------------------------------------------------------------


def test_long_audit_values_are_clipped_with_a_tooltip_or_expand(
    signed_in, admin_a, reviewer_a, tenant_a, api
):
    from apps.core import audit
    from apps.tenancy.pseudonyms import pseudonymise

    api.put("/api/v1/users/reader-9", {"attributes": {"plan": "gold"}}, format="json", **tenant_a.auth)
    signed_in(admin_a).post(f"/t/{tenant_a.slug}/users/export/", {"user_ref": "reader-9", "confirm": "on"})
    with tenant_context(tenant_a.tenant.id):
        audit.record(
            tenant_id=tenant_a.tenant.id,
            actor="system",
            action="test.long",
            target_type="thing",
            target_id="t" * 150,
            details={"note": "x" * 400, "hash": "ab" * 32},
        )
    html = signed_in(reviewer_a).get(f"/t/{tenant_a.slug}/audit/").content.decode()
    assert '<table class="data fixed" data-testid="audit-table">' in html
    pseudonym = pseudonymise(tenant_id=tenant_a.tenant.id, user_ref="reader-9").hex()
    assert f'<span class="clip mono" title="{pseudonym}">{pseudonym}</span>' in html
    # long details expand in place, the whole JSON kept (in the tooltip and the expanded block)
    long_row = html[html.index('data-field="details"><details class="cell">') :]
    assert "&quot;note&quot;: &quot;" + "x" * 400 + "&quot;" in long_row[: long_row.index("</details>")]


# --- 4. the access export as a download ------------------------------------------------------------


def test_the_access_export_downloads_as_json_and_is_audited_like_the_apis(
    signed_in, admin_a, reviewer_a, tenant_a, api
):
    from apps.tenancy.pseudonyms import pseudonymise

    user_ref = "customer-0815"
    api.put(f"/api/v1/users/{user_ref}", {"attributes": {"city": "Lisbon"}}, format="json", **tenant_a.auth)
    pseudonym = pseudonymise(tenant_id=tenant_a.tenant.id, user_ref=user_ref).hex()
    client = signed_in(admin_a)
    url = f"/t/{tenant_a.slug}/users/export.json"
    # without the explicit confirmation: nothing decrypted, nothing recorded
    with mock.patch("apps.core.audit.record") as record:
        refused = client.post(url, {"user_ref": user_ref})
    assert refused.status_code == 400 and b"Lisbon" not in refused.content and record.call_count == 0
    assert client.get(url).status_code == 405  # the id travels in a POST body only
    before = audit_rows(tenant_a.tenant.id, "end_user.export")
    download = client.post(url, {"user_ref": user_ref, "confirm": "on"})
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json; charset=utf-8"
    disposition = download["Content-Disposition"]
    assert disposition.startswith(f'attachment; filename="access-export-{tenant_a.slug}-{pseudonym[:16]}-')
    assert disposition.endswith('.json"') and user_ref not in disposition
    assert download["Cache-Control"] == "no-store"
    body = json.loads(download.content)
    assert (
        body["user"] == user_ref
        and body["pseudonym"] == pseudonym
        and body["attributes"] == {"city": "Lisbon"}
    )
    # one audit row for the download, written by the service under the admin's name
    after = audit_rows(tenant_a.tenant.id, "end_user.export")
    assert after[1:] == before and after[0] == (f"user:{admin_a.username}", pseudonym)
    # the same document the API's export gives, audited the same way (what differs is who asked)
    from_api = api.get(f"/api/v1/users/{user_ref}", **tenant_a.auth).json()
    assert body == from_api
    with_api = audit_rows(tenant_a.tenant.id, "end_user.export")
    assert with_api[1:] == after and with_api[0][0].startswith("key:") and with_api[0][1] == pseudonym
    # a reviewer may not export
    assert signed_in(reviewer_a).post(url, {"user_ref": user_ref, "confirm": "on"}).status_code == 403


# --- 5. 404 pages -----------------------------------------------------------------------------------


def test_an_unknown_admin_url_answers_an_html_404_in_the_tenants_layout(
    signed_in, admin_a, tenant_a, tenant_b
):
    client = signed_in(admin_a)
    mine = client.get(f"/t/{tenant_a.slug}/nope/")
    assert mine.status_code == 404 and mine["Content-Type"].startswith("text/html")
    assert b'data-testid="not-found"' in mine.content and b'data-section="keys"' in mine.content
    assert tenant_a.tenant.name.encode() in mine.content
    # another tenant's slug reads exactly like one that does not exist, and names nothing
    theirs = client.get(f"/t/{tenant_b.slug}/nope/")
    missing = client.get("/t/no-such-tenant/nope/")
    assert theirs.status_code == missing.status_code == 404
    assert theirs.content == missing.content and tenant_b.slug.encode() not in theirs.content
    assert b"<h1>Not found</h1>" in theirs.content
    # outside any tenant, and for anonymous visitors, the bare page
    assert client.get("/nope/").status_code == 404 and b"<h1>Not found</h1>" in client.get("/nope/").content
    from django.test import Client

    anonymous = Client().get(f"/t/{tenant_a.slug}/nope/")
    assert anonymous.status_code == 404 and anonymous["Content-Type"].startswith("text/html")
    assert tenant_a.tenant.name.encode() not in anonymous.content


def test_an_object_missing_under_ones_own_tenant_keeps_the_layout(signed_in, admin_a, tenant_a, tenant_b):
    from apps.tenancy.selectors import api_keys_for_tenant

    with tenant_context(tenant_b.tenant.id):
        their_key = api_keys_for_tenant(tenant_id=tenant_b.tenant.id).first()
    assert their_key is not None
    response = signed_in(admin_a).get(f"/t/{tenant_a.slug}/keys/{their_key.pk}/revoke/")
    assert response.status_code == 404 and b'data-testid="not-found"' in response.content


def test_unknown_api_paths_keep_their_json_404(signed_in, admin_a, anon, live_db):
    for client in (anon, signed_in(admin_a)):
        for path in ("/api/v1/nope", "/api/nope", "/health/nope"):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response["Content-Type"] == "application/json", path
            assert response.json()["error"]["code"] == "not_found"


# --- 6. the recommendation preview --------------------------------------------------------------------

CATALOGUE = {str(i): f"Item number {i}" for i in range(1, 25)}


def test_the_preview_shows_what_the_api_recommends_and_is_audited(
    signed_in, admin_a, reviewer_a, tenant_a, api
):
    from apps.tenancy.pseudonyms import pseudonymise

    make_items(tenant_a.tenant.id, CATALOGUE, encode=tuple(CATALOGUE))
    user_ref = "fan-42"
    rate_items(api, tenant_a, user_ref, {"3": 5.0, "7": 4.0, "11": 1.0})
    from_api = api.get("/api/v1/recommendations", {"user": user_ref}, **tenant_a.auth).json()
    assert from_api["strategy"] == "content" and len(from_api["items"]) == 10
    client = signed_in(admin_a)
    assert b'data-testid="preview-form"' in client.get(f"/t/{tenant_a.slug}/users/").content
    response = client.post(f"/t/{tenant_a.slug}/users/recommendations/", {"preview-user_ref": user_ref})
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    preview = response.context["preview"]
    assert preview.strategy == from_api["strategy"]
    assert [(r.external_id, r.score) for r in preview.items] == [
        (i["id"], i["score"]) for i in from_api["items"]
    ]
    assert [r.item.title for r in preview.items] == [CATALOGUE[i["id"]] for i in from_api["items"]]
    html = response.content.decode()
    assert (
        f'<tr data-item="{from_api["items"][0]["id"]}">' in html
        and CATALOGUE[from_api["items"][0]["id"]] in html
    )
    # seen items are left out, as the API does
    assert not {"3", "7", "11"} & {r.external_id for r in preview.items}
    # audited under the admin's name, the pseudonym as target
    pseudonym = pseudonymise(tenant_id=tenant_a.tenant.id, user_ref=user_ref).hex()
    assert audit_rows(tenant_a.tenant.id, "end_user.recommendations.view") == [
        (f"user:{admin_a.username}", pseudonym)
    ]
    # a user the tenant never saw gets the API's cold start, said plainly
    cold = client.post(f"/t/{tenant_a.slug}/users/recommendations/", {"preview-user_ref": "nobody-yet"})
    assert cold.status_code == 200 and cold.context["preview"].strategy in ("popular", "newest")
    # an id the API would refuse is a form error; a GET is refused (the id never goes in a URL)
    bad = client.post(f"/t/{tenant_a.slug}/users/recommendations/", {"preview-user_ref": "tab\tin id"})
    assert bad.status_code == 400 and b"control characters" in bad.content
    assert client.get(f"/t/{tenant_a.slug}/users/recommendations/").status_code == 405
    # reviewers may not look
    assert (
        signed_in(reviewer_a)
        .post(f"/t/{tenant_a.slug}/users/recommendations/", {"preview-user_ref": user_ref})
        .status_code
        == 403
    )


# --- 7. catalogue search by meaning ---------------------------------------------------------------------

MOVIES = [
    {
        "id": "toy",
        "title": "Toy Story",
        "description": "An animated film: a cowboy doll is jealous of a new spaceman action figure.",
    },
    {
        "id": "heat",
        "title": "Heat",
        "description": "A crew of professional bank robbers is hunted by an obsessive police detective.",
    },
    {
        "id": "sense",
        "title": "Sense and Sensibility",
        "description": "Two sisters in Regency England search for love and marriage.",
    },
    {
        "id": "jumanji",
        "title": "Jumanji",
        "description": "A magical board game releases jungle animals into a small town.",
    },
    {"id": "bond", "title": "GoldenEye", "description": "A British secret agent stops a satellite weapon."},
]


def test_search_by_meaning_finds_the_nearest_items_with_the_apis_encoder(signed_in, admin_a, tenant_a, api):
    from apps.catalog import encoding
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.catalog.services import items_encode, items_upsert
    from apps.catalog.validation import parse_items
    from apps.serving import query_encoding

    tenant_id = tenant_a.tenant.id
    with mock.patch("apps.catalog.services.encoding_enqueue"):  # encoded right here by the real encoder
        items_upsert(tenant_id=tenant_id, items=parse_items(MOVIES))
    items_encode(
        tenant_id=tenant_id,
        item_pks=list(item_pks_by_external_ids(tenant_id, [m["id"] for m in MOVIES]).values()),
    )
    # the query encoder of the search path is the very object the items went through
    assert query_encoding._encoder(tenant_id) is encoding.encoder_for_tenant(tenant_id)
    client = signed_in(admin_a)
    url = f"/t/{tenant_a.slug}/catalog/"
    # a substring search finds nothing for words no title contains...
    assert list(client.get(url, {"q": "cartoon toys", "mode": "title"}).context["page"].items) == []
    # ...while by meaning the nearest item comes first, ranked exactly as /api/v1/search ranks it
    for query, expected in (("a cartoon about toys", "toy"), ("bank robbery and a police chase", "heat")):
        response = client.get(url, {"q": query, "mode": "meaning"})
        assert response.status_code == 200
        found = response.context["matches"].items
        assert found[0].external_id == expected and found[0].item.title in response.content.decode()
        from_api = api.get("/api/v1/search", {"q": query, "k": 20}, **tenant_a.auth).json()
        assert [(r.external_id, r.score) for r in found] == [(i["id"], i["score"]) for i in from_api["items"]]
    # the encoding filter still applies, and title mode is the default
    assert (
        client.get(url, {"q": "a cartoon about toys", "mode": "meaning", "status": "failed"})
        .context["matches"]
        .items
        == []
    )
    assert [i.title for i in client.get(url, {"q": "toy"}).context["page"].items] == ["Toy Story"]


def test_search_by_meaning_says_why_when_the_encoder_is_unavailable(signed_in, admin_a, tenant_a):
    from apps.catalog.encoder import EncoderConfigError

    make_items(tenant_a.tenant.id, {"1": "Toy Story"})
    with mock.patch("apps.serving.selectors.query_vector", side_effect=EncoderConfigError("no model folder")):
        response = signed_in(admin_a).get(f"/t/{tenant_a.slug}/catalog/", {"q": "toys", "mode": "meaning"})
    assert response.status_code == 200 and b"search is unavailable: no model folder" in response.content
    assert response.context["matches"] is None and [i.title for i in response.context["page"].items] == [
        "Toy Story"
    ]

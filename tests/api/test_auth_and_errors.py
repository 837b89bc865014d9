"""API keys: 401/403 with a clear message, scopes, revocation, and the error format."""

import pytest

from apps.tenancy.services import api_key_create, api_key_revoke
from tests.support import make_tenant


def test_a_valid_key_identifies_its_tenant(api, tenant_a):
    response = api.get("/api/v1/tenant", **tenant_a.auth)
    assert response.status_code == 200
    assert response.json()["tenant"] == tenant_a.slug


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "an API key is required"),
        ("Bearer", "use 'Authorization: Bearer <api key>'"),
        ("Basic dXNlcjpwYXNz", "use 'Authorization: Bearer <api key>'"),
        ("Bearer not-a-key", "malformed API key"),
        ("Bearer sotto_abcdefghij_" + "x" * 43, "invalid API key"),
    ],
)
def test_missing_or_malformed_keys_get_401_with_a_reason(anon, live_db, header, message):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = anon.get("/api/v1/tenant", **extra)
    assert response.status_code == 401
    body = response.json()
    assert body["error"]["code"] == "unauthenticated"
    assert message in body["error"]["message"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_right_prefix_with_a_wrong_secret_is_rejected(api, tenant_a):
    forged = tenant_a.key[:-4] + "AAAA"
    response = api.get("/api/v1/tenant", HTTP_AUTHORIZATION=f"Bearer {forged}")
    assert response.status_code == 401


def test_a_revoked_key_is_refused_at_once(api, tenant_a):
    issued = api_key_create(tenant=tenant_a.tenant, name="temp", scopes=["serve"])
    auth = {"HTTP_AUTHORIZATION": f"Bearer {issued.raw}"}
    assert api.get("/api/v1/tenant", **auth).status_code == 200
    api_key_revoke(tenant=tenant_a.tenant, key_id=issued.key.id, actor="test")
    response = api.get("/api/v1/tenant", **auth)
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_the_raw_key_is_never_stored(tenant_a):
    from apps.core.tenant_db import tenant_context
    from apps.tenancy.models import ApiKey

    with tenant_context(tenant_a.tenant.id):
        stored = list(ApiKey.objects.values_list("key_hash", "prefix"))
    assert all(tenant_a.key not in (h, p) for h, p in stored)
    assert any(len(h) == 64 for h, _ in stored)


def test_unknown_api_paths_answer_json_404(anon, live_db):
    response = anon.get("/api/v1/definitely-not-here")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_schema_and_docs_are_served(anon, live_db):
    schema = anon.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/tenant" in schema.content
    assert anon.get("/api/docs/").status_code == 200


def test_the_schema_declares_the_bearer_scheme_and_types_the_settings_document(anon, live_db):
    schema = anon.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()

    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    patch = schema["paths"]["/api/v1/tenant/settings"]["patch"]
    assert {"apiKey": []} in patch["security"]
    ref = patch["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = schema["components"]["schemas"][ref]["properties"]
    assert {
        "model",
        "retraining",
        "privacy_budget",
        "retention",
        "rate_limit_per_s",
        "slo_objectives",
    } <= set(fields)


def test_health_live_and_ready(anon, live_db):
    assert anon.get("/health/live").json() == {"status": "ok"}
    ready = anon.get("/health/ready")
    assert ready.status_code == 200, ready.content
    assert ready.json()["checks"] == {"database": "ok", "broker": "ok"}


def test_scoped_key_without_the_needed_scope_gets_403(api, live_db):
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory

    from apps.api.base import TenantAPIView

    class TrainOnly(TenantAPIView):
        scope = "train"

        def get(self, request):
            return Response({"ok": True})

    persona = make_tenant("scoped", scopes=["serve"])
    request = APIRequestFactory().get("/x", HTTP_AUTHORIZATION=f"Bearer {persona.key}")
    response = TrainOnly.as_view()(request)
    assert response.status_code == 403
    assert "lacks the 'train' scope" in response.data["error"]["message"]


def test_views_cannot_override_the_tenant_scoping():
    from apps.api.base import TenantAPIView

    with pytest.raises(TypeError, match="may not override initial"):
        type("Sneaky", (TenantAPIView,), {"initial": lambda self, request: None})


def test_an_oversize_body_gets_a_json_413_not_an_html_page(api, tenant_a, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = (
        '{"events": ['
        + ",".join(['{"event_id": "e", "user": "u", "item": "i", "type": "view"}'] * 100)
        + "]}"
    )
    response = api.post("/api/v1/events", data=body, content_type="application/json", **tenant_a.auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert "2048" in response.json()["error"]["message"]

"""GET /api/v1/users/{id} (access export) and DELETE (erasure with receipt), both audited.

Personas: ``tenant_a`` (ingest key, items i0-i5), ``tenant_b`` (must see nothing of A's users).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apps.core.tenant_db import tenant_context
from apps.profiles.models import EndUser, UserAttribute, UserEvent, UserState
from apps.profiles.selectors import seen_item_pks, user_state
from apps.tenancy.pseudonyms import pseudonymise
from tests.profiles.conftest import event, state_of
from tests.support import make_tenant

T0 = datetime(2025, 4, 1, tzinfo=UTC)


def seed(api, persona, ref="nina"):
    api.put(f"/api/v1/users/{ref}", {"attributes": {"age": 33, "plan": "pro"}}, format="json", **persona.auth)
    events = [
        event(
            ref, f"i{n}", "rating", value=4, ts=(T0 + timedelta(minutes=n)).isoformat(), event_id=f"{ref}-{n}"
        )
        for n in range(3)
    ]
    assert api.post("/api/v1/events", {"events": events}, format="json", **persona.auth).status_code == 201


def test_the_export_holds_attributes_events_and_state_and_is_audited(api, tenant_a, items_a, audit_log):
    seed(api, tenant_a)
    audit_log.clear()
    response = api.get("/api/v1/users/nina", **tenant_a.auth)
    assert response.status_code == 200
    body = response.json()
    pseudonym = pseudonymise(tenant_id=tenant_a.tenant.id, user_ref="nina").hex()
    assert body["user"] == "nina" and body["pseudonym"] == pseudonym
    assert body["attributes"] == {"age": 33, "plan": "pro"}
    assert [(e["item"], e["type"], e["value"], e["folded"]) for e in body["events"]] == [
        ("i0", "rating", 4.0, True),
        ("i1", "rating", 4.0, True),
        ("i2", "rating", 4.0, True),
    ]
    assert body["events"][0]["timestamp"] == T0.isoformat()
    assert body["events_total"] == 3 and body["events_next_offset"] is None
    assert body["state"]["events_folded"] == 3 and body["state"]["last_items"] == ["i0", "i1", "i2"]
    assert [c["action"] for c in audit_log] == ["end_user.export"]
    assert audit_log[0]["target_id"] == pseudonym
    assert audit_log[0]["details"]["attributes_decrypted"] == 2
    assert "nina" not in repr(audit_log)


def test_the_export_pages_events(api, tenant_a, items_a):
    seed(api, tenant_a)
    page = api.get("/api/v1/users/nina?events_limit=2", **tenant_a.auth).json()
    assert len(page["events"]) == 2 and page["events_next_offset"] == 2
    rest = api.get("/api/v1/users/nina?events_offset=2&events_limit=2", **tenant_a.auth).json()
    assert [e["item"] for e in rest["events"]] == ["i2"] and rest["events_next_offset"] is None
    assert api.get("/api/v1/users/nina?events_limit=0", **tenant_a.auth).status_code == 400
    assert api.get("/api/v1/users/nina?events_offset=x", **tenant_a.auth).status_code == 400


def test_every_attribute_write_is_audited_by_pseudonym(api, tenant_a, audit_log):
    api.put("/api/v1/users/olga", {"attributes": {"a": 1}}, format="json", **tenant_a.auth)
    assert [c["action"] for c in audit_log] == ["end_user.attributes.replace"]
    assert audit_log[0]["target_id"] == pseudonymise(tenant_id=tenant_a.tenant.id, user_ref="olga").hex()
    assert audit_log[0]["actor"].startswith("key:")


def test_an_unknown_user_is_404_and_so_is_another_tenants_user(api, tenant_a, tenant_b, items_a):
    seed(api, tenant_a)
    assert api.get("/api/v1/users/nobody", **tenant_a.auth).status_code == 404
    for method in (api.get, api.delete):
        response = method("/api/v1/users/nina", **tenant_b.auth)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_export_and_erasure_need_the_ingest_scope(api, tenant_a, items_a):
    seed(api, tenant_a)
    serve_only = make_tenant("srv", scopes=["serve"])
    assert api.get("/api/v1/users/nina", **serve_only.auth).status_code == 403
    assert api.delete("/api/v1/users/nina", **serve_only.auth).status_code == 403


def test_erasure_deletes_everything_destroys_the_key_and_returns_a_receipt(api, tenant_a, items_a, audit_log):
    seed(api, tenant_a)
    api.post("/api/v1/events", {"events": [event("other", "i1")]}, format="json", **tenant_a.auth)
    tenant_id = tenant_a.tenant.id
    pseudonym = pseudonymise(tenant_id=tenant_id, user_ref="nina")
    with tenant_context(tenant_id):
        user = EndUser.objects.get(tenant_id=tenant_id, pseudonym=pseudonym)
        assert user.wrapped_key is not None
    audit_log.clear()

    response = api.delete("/api/v1/users/nina", **tenant_a.auth)

    assert response.status_code == 200
    receipt = response.json()
    assert receipt["user"] == "nina" and receipt["key_destroyed"] is True
    assert receipt["deleted"] == {"events": 3, "attributes": 2, "state": 1, "user": 1}
    assert len(receipt["receipt_id"]) == 32 and datetime.fromisoformat(receipt["erased_at"])
    with tenant_context(tenant_id):
        assert not EndUser.objects.filter(pk=user.pk).exists()
        for model in (UserEvent, UserAttribute, UserState):
            assert not model.objects.filter(user_id=user.pk).exists()
        assert EndUser.objects.filter(tenant_id=tenant_id).count() == 1  # the other user is untouched
    assert api.get("/api/v1/users/nina", **tenant_a.auth).status_code == 404
    assert user_state(tenant_id, "nina") is None and seen_item_pks(tenant_id, "nina") == set()
    assert api.delete("/api/v1/users/nina", **tenant_a.auth).status_code == 404
    assert [c["action"] for c in audit_log] == ["end_user.erase"]
    record = audit_log[0]
    assert record["target_id"] == pseudonym.hex() and record["details"]["receipt_id"] == receipt["receipt_id"]
    assert "nina" not in repr(record)


def test_events_after_erasure_start_a_fresh_profile(api, tenant_a, items_a):
    seed(api, tenant_a)
    api.delete("/api/v1/users/nina", **tenant_a.auth)
    api.post("/api/v1/events", {"events": [event("nina", "i4")]}, format="json", **tenant_a.auth)
    export = api.get("/api/v1/users/nina", **tenant_a.auth).json()
    assert export["attributes"] == {} and [e["item"] for e in export["events"]] == ["i4"]
    assert state_of(tenant_a.tenant.id, "nina")["n_events"] == 1

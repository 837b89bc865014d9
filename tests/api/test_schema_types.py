"""The OpenAPI schema types every request and response of ``/api/v1/``, and real answers fit it.

Personas: ``tenant_a`` (an all-scopes key) with a seeded catalogue and user base
(``tests.modeling.support.seed_tenant``: 30 items with content vectors, 40 users with ratings),
items and events sent through the API, and three training runs executed in-process (the queues
are recorded, not sent): model versions active, previous and rejected. An anonymous client and an
``audit``-only key provoke the 401 and 403 answers.

What is checked:

- no 2xx answer of an operation is an untyped object: every object has properties (or typed
  values), except the few free-form records named in ``FREE_FORM``; every 4xx and 503 is the
  ``Error`` component; every key-protected operation declares 503 (``TenantAPIView.dispatch``);
- every operation declares the bearer scheme, except the two public-key ones, which really answer
  without credentials (and every other one really answers 401 without them);
- every operation is called with real data and each answer (2xx and error) is validated against
  the schema declared for its status and content type with ``jsonschema``, strictly: an answer key
  the schema does not declare fails (so a serializer that forgot a field fails), as does a request
  body the declared request schema would refuse;
- the validator itself rejects deliberately wrong bodies (a missing, extra, mistyped, null or
  out-of-enum field), so the checks above can fail;
- ``/api/docs/`` and ``/api/redoc/`` reference only our own ``/static/`` files, which answer 200.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # schemathesis' dependency; it ships no stubs
import pytest
from rest_framework.test import APIClient

from apps.core.tenant_db import tenant_context
from tests.profiles.conftest import encode_items, fake_vector
from tests.support import TenantPersona, make_tenant

SCHEMA_URL = "/api/schema/?format=json"
API = "/api/v1/"
PUBLIC = {"GET /api/v1/audit/public-key", "GET /api/v1/audit/public-key.pem"}
# The only untyped objects a 2xx answer may hold (component.field): records whose keys depend on
# the DP design that ran and on the gate's verdict (docs/modeling.md), not frozen into the API.
FREE_FORM = {
    "TrainingRunOut.metrics",
    "TrainingRunOut.release",
    "TrainingRunOut.gate",
    "LedgerEntryOut.details",
    "ModelVersionOut.mechanisms[]",
    "ModelVersionOut.gate",
}
PATH_VALUES = {"external_id": "x", "user_ref": "x", "run_id": "1", "version": "1"}
COMBINERS = ("allOf", "oneOf", "anyOf")


# --- the schema --------------------------------------------------------------------------------


@pytest.fixture
def schema(anon: APIClient, live_db: None) -> dict[str, Any]:
    response = anon.get(SCHEMA_URL)
    assert response.status_code == 200, response.content[:300]
    return dict(response.json())


def operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``"METHOD /api/v1/path"`` -> the operation object, for every operation under /api/v1/."""
    return {
        f"{method.upper()} {path}": op
        for path, item in schema["paths"].items()
        if path.startswith(API)
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    }


def untyped(
    doc: dict[str, Any], node: dict[str, Any], where: str, seen: frozenset[str] = frozenset()
) -> Iterator[str]:
    """Where (``Component.field``, ``[]`` for list items, ``{}`` for map values) ``node`` holds an
    object without properties or typed values, or a schema with no type at all."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in seen:
            yield from untyped(doc, doc["components"]["schemas"][name], name, seen | {name})
        return
    combined = [sub for key in COMBINERS for sub in node.get(key, [])]
    for sub in combined:
        yield from untyped(doc, sub, where, seen)
    if node.get("type") == "array":
        yield from untyped(doc, node.get("items", {}), where + "[]", seen)
    elif node.get("type") == "object" or "properties" in node:
        values = node.get("additionalProperties")
        if not node.get("properties") and values in (None, True, {}):
            yield where
        for name, sub in node.get("properties", {}).items():
            yield from untyped(doc, sub, f"{where}.{name}", seen)
        if isinstance(values, dict) and values:
            yield from untyped(doc, values, where + "{}", seen)
    elif not combined and "type" not in node and "enum" not in node:
        yield where


def to_json_schema(node: Any) -> Any:
    """An OpenAPI 3.0 schema object as JSON Schema 2020-12, strict: ``nullable`` becomes a null
    alternative, a boolean ``exclusiveMinimum`` a numeric one, and every object that lists its
    properties refuses any other key (``additionalProperties: false`` unless it says otherwise)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "nullable" or (key == "minimum" and node.get("exclusiveMinimum") is True):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not") and isinstance(value, dict):
            out[key] = to_json_schema(value)
        elif key in COMBINERS:
            out[key] = [to_json_schema(sub) for sub in value]
        elif key == "exclusiveMinimum" and value is True:
            out[key] = node["minimum"]
        else:
            out[key] = value
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") else out


def problems(doc: dict[str, Any], target: dict[str, Any], instance: Any) -> list[str]:
    """What is wrong with ``instance`` under the OpenAPI schema ``target`` (refs into ``doc``'s components)."""
    root = {
        **to_json_schema(target),
        "components": {"schemas": {n: to_json_schema(s) for n, s in doc["components"]["schemas"].items()}},
    }
    validator = jsonschema.Draft202012Validator(root)
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '<body>'}: {e.message}"[:300]
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


# --- declarations ------------------------------------------------------------------------------


def test_no_success_answer_is_an_untyped_object(schema):
    found: dict[str, list[str]] = {}
    for name, op in operations(schema).items():
        for status, response in op["responses"].items():
            if not status.startswith("2"):
                continue
            content = response.get("content", {})
            assert content or status == "204", f"{name} {status} declares no body"
            for media, body in content.items():
                if media == "application/json":
                    assert "$ref" in body["schema"], (
                        f"{name} {status}: not a named component: {body['schema']}"
                    )
                    found[f"{name} {status}"] = list(untyped(schema, body["schema"], "<body>"))
                else:  # the audit export (zip, csv) and the PEM file
                    assert body["schema"]["type"] == "string", (name, media, body)
    json_ops = {key.rsplit(" ", 1)[0] for key in found}
    binary_or_empty = {
        "GET /api/v1/audit/export",
        "GET /api/v1/audit/public-key.pem",
        "DELETE /api/v1/items/{external_id}",
    }
    assert json_ops == set(operations(schema)) - binary_or_empty, sorted(json_ops)
    loose = {key: sorted(set(where) - FREE_FORM) for key, where in found.items() if set(where) - FREE_FORM}
    assert not loose, f"untyped objects in 2xx answers (type them, or name them in FREE_FORM): {loose}"
    assert set().union(*found.values()) == FREE_FORM, "FREE_FORM names a field that is no longer free-form"


def test_the_untyped_object_finder_flags_bare_objects_and_passes_typed_ones():
    doc = {
        "components": {
            "schemas": {
                "Bare": {"type": "object"},
                "AnyValues": {"type": "object", "additionalProperties": {}},
                "Typed": {
                    "type": "object",
                    "properties": {
                        "a": {"type": "string"},
                        "m": {"type": "object", "additionalProperties": {"type": "integer"}},
                    },
                },
                "Nested": {
                    "type": "object",
                    "properties": {
                        "x": {"type": "array", "items": {"type": "object"}},
                        "y": {"description": "anything"},
                    },
                },
            }
        }
    }

    def where(name: str) -> list[str]:
        return list(untyped(doc, {"$ref": f"#/components/schemas/{name}"}, "<body>"))

    assert where("Bare") == ["Bare"] and where("AnyValues") == ["AnyValues"]
    assert where("Typed") == []
    assert where("Nested") == ["Nested.x[]", "Nested.y"]


def test_every_error_answer_is_the_error_component_and_writes_declare_503(schema):
    error = schema["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert error["properties"]["error"]["required"] == ["code", "message", "details"]
    for name, op in operations(schema).items():
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                ref = response.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref")
                assert ref == "#/components/schemas/Error", f"{name} {status}: {response}"
        if name in PUBLIC:
            continue
        assert {"401", "403", "429", "503"} <= set(op["responses"]), name
        assert (
            "Retry-After" in op["responses"]["503"]["headers"]
            and "Retry-After" in op["responses"]["429"]["headers"]
        )
        if "requestBody" in op:
            assert "413" in op["responses"], name


def test_every_operation_declares_the_bearer_key_except_the_public_key(schema, anon):
    scheme = schema["components"]["securitySchemes"]["apiKey"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ops = operations(schema)
    assert len(ops) >= 27, sorted(ops)
    assert set(ops) >= PUBLIC
    for name, op in ops.items():
        method, path = name.split(" ", 1)
        url = re.sub(r"{(\w+)}", lambda m: PATH_VALUES[m.group(1)], path)
        response = anon.generic(
            method, url, data="{}" if "requestBody" in op else "", content_type="application/json"
        )
        if name in PUBLIC:
            assert not op.get("security"), name
            assert response.status_code == 200, name
        else:
            assert op.get("security") == [{"apiKey": []}], f"{name}: {op.get('security')}"
            assert response.status_code == 401, f"{name} without a key: {response.status_code}"
            assert not problems(
                schema, op["responses"]["401"]["content"]["application/json"]["schema"], response.json()
            )


# --- the validator can fail --------------------------------------------------------------------

GOOD_TENANT = {"tenant": "shop", "key_prefix": "abcdefghij", "scopes": ["ingest", "serve"]}
GOOD_PAGE = {
    "items": [
        {
            "id": "sku-1",
            "title": "Shoes",
            "description": "",
            "categories": ["c"],
            "attributes": {"brand": "Acme", "size": 42, "new": True, "gone": None},
            "available": True,
            "created_at": "2026-01-01T00:00:00Z",
            "updated_at": "2026-01-01T00:00:00Z",
            "encoding": {"status": "ready", "model": None, "updated_at": None, "truncated": False},
        }
    ],
    "next_cursor": None,
}
GOOD_ERROR = {"error": {"code": "invalid", "message": "k must be from 1 to 100", "details": {"k": "0"}}}


def _without(body: dict[str, Any], *path: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _with(body: dict[str, Any], value: Any, *path: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("component", "good", "bad"),
    [
        ("TenantOut", GOOD_TENANT, _without(GOOD_TENANT, "scopes")),  # a required key missing
        ("TenantOut", GOOD_TENANT, _with(GOOD_TENANT, "x", "surprise")),  # a key nobody declared
        ("TenantOut", GOOD_TENANT, _with(GOOD_TENANT, 7, "tenant")),  # wrong type
        ("TenantOut", GOOD_TENANT, _with(GOOD_TENANT, None, "key_prefix")),  # null where not nullable
        ("TenantOut", GOOD_TENANT, _with(GOOD_TENANT, ["root"], "scopes")),  # outside the enum
        ("ItemsPageOut", GOOD_PAGE, _with(GOOD_PAGE, "weird", "items", 0, "encoding", "status")),
        ("ItemsPageOut", GOOD_PAGE, _with(GOOD_PAGE, {"nested": 1}, "items", 0, "attributes", "brand")),
        ("ItemsPageOut", GOOD_PAGE, _with(GOOD_PAGE, 5, "next_cursor")),
        ("ItemsPageOut", GOOD_PAGE, _without(GOOD_PAGE, "items", 0, "encoding", "truncated")),
        ("Error", GOOD_ERROR, _without(GOOD_ERROR, "error", "details")),
        ("Error", GOOD_ERROR, {"detail": "Not found."}),  # DRF's own shape
    ],
)
def test_the_validator_rejects_answers_that_break_the_schema(schema, component, good, bad):
    target = {"$ref": f"#/components/schemas/{component}"}

    assert problems(schema, target, good) == []
    assert problems(schema, target, bad), f"{component} accepted {bad}"


# --- real answers ------------------------------------------------------------------------------


@dataclass
class Checker:
    """Sends requests and validates each request body and answer against the declared schema."""

    schema: dict[str, Any]
    client: APIClient
    ok: set[str] = field(default_factory=set)  # operations with a validated 2xx answer
    statuses: dict[str, set[int]] = field(default_factory=dict)

    def call(
        self,
        method: str,
        template: str,
        url: str | None = None,
        body: Any = None,
        *,
        client: APIClient | None = None,
        expect: int | None = None,
    ) -> Any:
        name = f"{method} {template}"
        op = operations(self.schema).get(name)
        assert op is not None, f"{name} is not in the schema"
        if body is not None and (expect is None or 200 <= expect < 300):  # bad bodies are meant to break it
            declared = op["requestBody"]["content"]["application/json"]["schema"]
            assert not (wrong := problems(self.schema, declared, body)), (
                f"{name}: the request schema refuses {wrong}"
            )
        response = (client or self.client).generic(
            method, url or template, data=json.dumps(body) if body else "", content_type="application/json"
        )
        status = response.status_code
        assert expect is None or status == expect, f"{name}: {status} {response.content[:500]!r}"
        declared_answer = op["responses"].get(str(status))
        assert declared_answer is not None, f"{name}: {status} is not a documented answer"
        media = response.get("Content-Type", "").split(";")[0].strip()
        content = declared_answer.get("content", {})
        if status == 204:
            assert not content and not response.content
        else:
            assert media in content, f"{name} {status}: {media} is not declared ({sorted(content)})"
        parsed = None
        if media == "application/json":
            parsed = response.json()
            wrong = problems(self.schema, content[media]["schema"], parsed)
            assert not wrong, (
                f"{name} {status} does not fit its schema: {wrong[:10]}\n{json.dumps(parsed)[:1500]}"
            )
        self.statuses.setdefault(name, set()).add(status)
        if 200 <= status < 300:
            self.ok.add(name)
        return parsed


@pytest.fixture
def quiet(monkeypatch: pytest.MonkeyPatch, settings: Any) -> list[tuple[Any, ...]]:
    """No broker traffic (encoding, training and activation tasks are recorded: the test runs the
    activation itself, so no version is left materialising for another test's reaper), no pointer
    caching, and search encodes with the hash-seeded fake (no BERT)."""
    from apps.modeling import artifacts, selectors

    sent: list[tuple[Any, ...]] = []
    monkeypatch.setattr(
        "apps.catalog.services.encoding_enqueue", lambda tenant_id, item_pks: sent.append(("encode",))
    )
    monkeypatch.setattr("apps.modeling.services._enqueue", lambda tenant_id, run_id: sent.append(("train",)))
    monkeypatch.setattr(
        "apps.modeling.lifecycle._enqueue_activation", lambda *args: sent.append(("activate", *args))
    )
    monkeypatch.setattr("apps.serving.selectors.query_vector", lambda tenant_id, text: fake_vector(text))
    settings.SOTTO = {**settings.SOTTO, "MODELING_POINTER_TTL_S": 0.0}
    selectors.clear_pointer_cache()
    artifacts.clear_cache()
    return sent


def _train(checker: Checker, persona: TenantPersona, expected: str) -> int:
    from apps.modeling.training import training_run_execute

    run = checker.call("POST", "/api/v1/training-runs", body={"epsilon": 4.0}, expect=202)
    assert training_run_execute(tenant_id=persona.tenant.id, run_id=run["id"]) == expected
    return int(run["id"])


@pytest.mark.slow
def test_every_operation_answers_what_its_schema_declares(schema, tenant_a, quiet, settings):
    from apps.catalog.models import Item
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.modeling import lifecycle
    from apps.slo.models import SloAlert
    from tests.modeling.support import seed_tenant, set_modeling

    tid = tenant_a.tenant.id
    client = APIClient()
    client.credentials(**tenant_a.auth)
    check = Checker(schema, client)
    seed_tenant(tenant_a)  # items i0..i29 with content vectors; users u0..u39 with ratings
    set_modeling(tenant_a, seed=7)

    # who am I; settings (an objective of its own, so one is not the default)
    check.call("GET", "/api/v1/tenant", expect=200)
    check.call("GET", "/api/v1/tenant/settings", expect=200)
    check.call(
        "PATCH",
        "/api/v1/tenant/settings",
        body={
            "slo_objectives": {"search": {"latency_threshold_ms": 300.0}},
            "retention": {"event_retention_days": 400},
            "model": {"dp_design": "auto"},
        },
        expect=200,
    )
    check.call("GET", "/api/v1/privacy-budget", expect=200)
    check.call(
        "PATCH", "/api/v1/privacy-budget", body={"epsilon_total": 40.0, "renewal_days": 30}, expect=200
    )

    # the catalogue: items through the API (an integer id, attributes), one left pending, one failed
    items = [
        {
            "id": "sku-1",
            "title": "Red shoes",
            "description": "trail",
            "categories": ["c0", "shoes"],
            "attributes": {"brand": "Acme", "size": 42, "vegan": True, "note": None},
            "available": True,
        },
        {"id": 42, "title": "The answer"},
        {"id": "sku-pending", "title": "Not encoded yet", "categories": None, "attributes": None},
        {"id": "sku-failed", "title": "Will fail", "description": None, "available": None},
    ]
    check.call("POST", "/api/v1/items", body={"items": items}, expect=200)
    pks = item_pks_by_external_ids(tid, ["sku-1", "42", "sku-failed"])
    encode_items(tid, [pks["sku-1"], pks["42"]])
    with tenant_context(tid):
        Item.objects.filter(pk=pks["sku-failed"]).update(
            encoding_status="failed", encoding_error="tokenizer broke"
        )
    page = check.call("GET", "/api/v1/items", "/api/v1/items?limit=2", expect=200)
    assert page["next_cursor"] is not None
    check.call("GET", "/api/v1/items", f"/api/v1/items?cursor={page['next_cursor']}&limit=200", expect=200)
    failed = check.call("GET", "/api/v1/items", "/api/v1/items?status=failed", expect=200)
    assert failed["items"][0]["encoding"]["error"] == "tokenizer broke"
    check.call("GET", "/api/v1/items/{external_id}", "/api/v1/items/sku-1", expect=200)
    check.call("GET", "/api/v1/items/{external_id}", "/api/v1/items/sku-pending", expect=200)
    check.call("GET", "/api/v1/items/{external_id}", "/api/v1/items/nope", expect=404)
    check.call(
        "GET", "/api/v1/items/{external_id}/similar", "/api/v1/items/i0/similar?k=5&category=c0", expect=200
    )
    check.call("GET", "/api/v1/items/{external_id}/similar", "/api/v1/items/sku-pending/similar", expect=409)
    check.call("GET", "/api/v1/catalog/status", expect=200)

    # events (one on an item without a vector: pending) and end users
    events = [
        {"event_id": "e-1", "user": "buyer", "item": "sku-1", "type": "purchase"},
        {
            "event_id": 2,
            "user": 77,
            "item": 42,
            "type": "rating",
            "value": 4.5,
            "timestamp": datetime.now(tz=UTC).timestamp() - 60,
        },
        {
            "event_id": "e-3",
            "user": "buyer",
            "item": "sku-pending",
            "type": "view",
            "timestamp": "2026-01-01T00:00:00Z",
        },
        {"event_id": "e-4", "user": "buyer", "item": "i1", "type": "rating", "value": 5, "timestamp": None},
    ]
    ingested = check.call("POST", "/api/v1/events", body={"events": events}, expect=201)
    assert ingested["pending"] == 1
    check.call(
        "POST",
        "/api/v1/events",
        body={"events": [{"event_id": "x", "user": "buyer", "item": "nope", "type": "view"}]},
        expect=400,
    )
    check.call(
        "POST",
        "/api/v1/events",
        body={"events": [{"event_id": n, "user": "u", "item": "i0", "type": "view"} for n in range(1001)]},
        expect=413,
    )
    check.call(
        "PUT",
        "/api/v1/users/{user_ref}",
        "/api/v1/users/buyer",
        body={"attributes": {"plan": "gold", "age": 41, "score": 0.5, "opt_in": False}},
        expect=200,
    )
    check.call("PUT", "/api/v1/users/{user_ref}", "/api/v1/users/newbie", body={"attributes": {}}, expect=201)
    export = check.call("GET", "/api/v1/users/{user_ref}", "/api/v1/users/buyer?events_limit=1", expect=200)
    assert export["state"] is not None and export["events_next_offset"] == 1
    assert check.call("GET", "/api/v1/users/{user_ref}", "/api/v1/users/newbie", expect=200)["state"] is None
    check.call("GET", "/api/v1/users/{user_ref}", "/api/v1/users/nobody", expect=404)

    # serving before any model: content ranking, cold start
    assert (
        check.call("GET", "/api/v1/recommendations", "/api/v1/recommendations?user=u0", expect=200)[
            "strategy"
        ]
        == "content"
    )
    check.call("GET", "/api/v1/recommendations", "/api/v1/recommendations?user=stranger&k=3", expect=200)
    check.call("GET", "/api/v1/recommendations", "/api/v1/recommendations", expect=400)
    check.call("GET", "/api/v1/search", "/api/v1/search?q=shoes&k=5", expect=200)
    assert check.call("GET", "/api/v1/search", "/api/v1/search?q=shoes&user=u0", expect=200)["personalised"]
    check.call("GET", "/api/v1/search", "/api/v1/search?q=%E7%8E%A9%E5%85%B7", expect=200)  # a CJK note

    # training: v1 and v2 served, v3 kept inactive by an impossible gate; a popularity release
    _train(check, tenant_a, "succeeded")
    run_2 = _train(check, tenant_a, "succeeded")
    settings.SOTTO = {**settings.SOTTO, "MODELING_GATE_MARGIN": 1000.0}
    _train(check, tenant_a, "rejected")
    check.call("GET", "/api/v1/training-runs", expect=200)
    check.call("GET", "/api/v1/training-runs/{run_id}", f"/api/v1/training-runs/{run_2}", expect=200)
    check.call("GET", "/api/v1/training-runs/{run_id}", "/api/v1/training-runs/999999999", expect=404)
    check.call("POST", "/api/v1/training-runs", body={"epsilon": 1000.0}, expect=409)
    versions = check.call("GET", "/api/v1/model-versions", expect=200)["versions"]
    assert [v["status"] for v in versions] == ["rejected", "active", "previous"]
    check.call(
        "POST", "/api/v1/model-versions/{version}/activate", "/api/v1/model-versions/1/activate", expect=200
    )
    check.call(
        "POST", "/api/v1/model-versions/{version}/activate", "/api/v1/model-versions/3/activate", expect=202
    )
    [(_, t, v, actor, restore)] = [task for task in quiet if task[0] == "activate"]
    assert (
        lifecycle.model_version_materialise_and_activate(tenant_id=t, version=v, actor=actor, restore=restore)
        == "active"
    )
    check.call(
        "POST", "/api/v1/model-versions/{version}/activate", "/api/v1/model-versions/3/activate", expect=409
    )
    check.call(
        "POST", "/api/v1/model-versions/{version}/activate", "/api/v1/model-versions/0/activate", expect=400
    )
    check.call("POST", "/api/v1/popularity-release", body={"epsilon": 0.5}, expect=201)
    check.call("POST", "/api/v1/popularity-release", body={"epsilon": -1}, expect=400)
    check.call("PATCH", "/api/v1/privacy-budget", body={"epsilon_total": 1e9}, expect=400)
    budget = check.call("GET", "/api/v1/privacy-budget", expect=200)
    assert budget["ledger"] and budget["next_renewal_at"] is not None
    assert (
        check.call(
            "GET", "/api/v1/recommendations", "/api/v1/recommendations?user=u0&diversity=0.5", expect=200
        )["strategy"]
        == "personal"
    )

    # service levels, with an open alert
    now = datetime.now(tz=UTC)
    with tenant_context(tid):
        SloAlert.objects.create(
            tenant_id=tid,
            endpoint_class="search",
            sli="latency",
            severity="fast",
            factor=14.4,
            long_window_s=3600,
            short_window_s=300,
            burn_long=20.0,
            burn_short=30.0,
            raised_at=now,
            last_burn_long=20.0,
            last_burn_short=30.0,
            last_evaluated_at=now,
        )
    assert check.call("GET", "/api/v1/slo", expect=200)["open_alerts"]

    # audit: the bundle, the CSV, the public key
    check.call("GET", "/api/v1/audit/export", expect=200)
    check.call("GET", "/api/v1/audit/export", "/api/v1/audit/export?format=csv&since=2020-01-01", expect=200)
    check.call("GET", "/api/v1/audit/export", "/api/v1/audit/export?format=pdf", expect=400)
    check.call("GET", "/api/v1/audit/public-key", expect=200)
    check.call("GET", "/api/v1/audit/public-key.pem", expect=200)

    # who may not: no key (401), a key without the scope (403)
    reviewer = APIClient()
    reviewer.credentials(**make_tenant("aud", scopes=["audit"]).auth)
    check.call("GET", "/api/v1/tenant/settings", client=reviewer, expect=403)
    check.call("GET", "/api/v1/slo", client=APIClient(), expect=401)

    # deletes last
    check.call("DELETE", "/api/v1/items/{external_id}", "/api/v1/items/sku-1", expect=204)
    check.call("DELETE", "/api/v1/items/{external_id}", "/api/v1/items/sku-1", expect=404)
    check.call("DELETE", "/api/v1/users/{user_ref}", "/api/v1/users/newbie", expect=200)

    assert check.ok == set(operations(schema)), (
        f"no validated 2xx for {sorted(set(operations(schema)) - check.ok)}"
    )


# --- offline documentation ---------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/api/docs/", "/api/redoc/"])
def test_the_api_docs_load_only_our_own_static_files(anon, live_db, page):
    response = anon.get(page)
    assert response.status_code == 200
    html = response.content.decode()

    assert not re.search(r"https?://", html), re.findall(r"https?://\S+", html)
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert any(a.endswith(".js") for a in assets), assets
    assert all(a.startswith("/static/drf_spectacular_sidecar/") for a in assets), assets
    for asset in assets:
        served = anon.get(asset)
        assert served.status_code == 200, asset
        body = b"".join(served.streaming_content) if served.streaming else served.content
        assert len(body) > 100, asset

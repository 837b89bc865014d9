"""Cross-tenant sweep of the whole API, generated from the OpenAPI schema the app serves.

Personas (who may touch what):

- ``tenant_b``, the victim: owns a catalogue, end users with events and attributes, a trained
  model (a training run, its ledger entries and model version 1), its own settings and budget, and
  an audit chain. Every string it owns carries one random marker; its ε, budget and rate limit
  are random-looking numbers. Nobody but B's own key may read or change any of it.
- ``tenant_a``, the prober: an all-scopes key and a small catalogue and user base of its own. It
  calls every operation under ``/api/v1/`` with B's real ids in every path parameter and every
  id-like query parameter, and with bodies that name B's ids. It may read and change only its own
  tenant: no 5xx, nothing of B's in any answer (beyond what A itself sent, or an id A has since
  created in its own namespace), not one of B's rows changed, and a lookup of B's object answers
  404 exactly like one that does not exist.
- a key of tenant A with only the ``audit`` scope (what a compliance reviewer's client holds):
  may read the audit export and nothing else; every write operation of the schema answers 403 and
  changes nothing.

A new operation, path parameter, id-like query parameter or request body that the sweep does not
know how to fill makes these tests fail with the name of what to add, so the sweep cannot silently
skip it.
"""

from __future__ import annotations

import io
import json
import random
import re
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from django.db import connection
from rest_framework.test import APIClient

from apps.core.tenant_db import tenant_context
from apps.tenancy.services import api_key_create
from tests.profiles.conftest import encode_items
from tests.support import TenantPersona

API_PREFIX = "/api/v1/"
SCHEMA_URL = "/api/schema/?format=json"
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The schema lists 27 operations under /api/v1/ (10 of them writes) today. Fewer means the generator
# (or the schema) lost some and the sweep would pass vacuously; after removing an endpoint on
# purpose, lower these numbers in the same change.
MIN_OPERATIONS = 27
MIN_WRITE_OPERATIONS = 10
# Methods in sweep order: reads first (A owns nothing with B's ids yet), then deletes (so they aim
# at ids A does not own: 404), then the writes that may create A's own objects under B's ids.
METHOD_ORDER = {"GET": 0, "HEAD": 1, "OPTIONS": 2, "DELETE": 3, "POST": 4, "PUT": 5, "PATCH": 6}
# Query parameters that name an object (or could select one); each needs a value in ``Ids.query``.
ID_LIKE_QUERY = re.compile(
    r"(^|_)(id|ids|ref|refs|user|users|item|items|run|runs|version|cursor|key|event|events)$"
)
# Request telemetry is counted per tenant by a background flusher thread, so B's own setup requests
# may land in these tables mid-sweep; they hold counts only, never data a write could touch.
TELEMETRY_TABLES = frozenset({"slo_latencyhistogram", "slo_latencytotal"})


# --- the schema --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    parameters: tuple[dict[str, Any], ...]
    has_body: bool

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"{([^}]+)}", self.path)

    @property
    def query_parameters(self) -> list[dict[str, Any]]:
        return [p for p in self.parameters if p.get("in") == "query"]


def _schema_operations(client: APIClient) -> list[Operation]:
    """Every operation under /api/v1/ in the schema the app serves, in sweep order."""
    response = client.get(SCHEMA_URL)
    assert response.status_code == 200, response.content[:500]
    schema = response.json()
    found: list[Operation] = []
    for path, item in schema["paths"].items():
        if not path.startswith(API_PREFIX):
            continue
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method.upper() not in METHOD_ORDER:
                continue
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    parameters=tuple(shared + op.get("parameters", [])),
                    has_body="requestBody" in op,
                )
            )
    return sorted(found, key=lambda o: (METHOD_ORDER[o.method], o.path))


# --- the ids a request carries -----------------------------------------------------------------


@dataclass(frozen=True)
class Ids:
    """One tenant's real ids, as the sweep puts them into paths, queries and bodies."""

    item: str  # the item paths and the upsert body name
    event_item: str  # an item only events name (never upserted by the prober)
    event_id: str
    user: str
    run_id: int
    version: int
    cursor: str  # an item's primary key, as the keyset cursor of the item list
    category: str
    title: str  # searched for as the text query

    def path(self) -> dict[str, str]:
        return {
            "external_id": self.item,
            "user_ref": self.user,
            "run_id": str(self.run_id),
            "version": str(self.version),
        }

    def query(self) -> dict[str, str]:
        return {"user": self.user, "cursor": self.cursor, "category": self.category, "q": self.title}


def _body(op: Operation, ids: Ids) -> dict[str, Any] | None:
    """A plausible body for each body-taking operation, naming ``ids`` wherever the body holds ids."""
    bodies: dict[str, dict[str, Any]] = {
        "POST /api/v1/events": {
            "events": [{"event_id": ids.event_id, "user": ids.user, "item": ids.event_item, "type": "click"}]
        },
        "POST /api/v1/items": {
            "items": [
                {
                    "id": ids.item,
                    "title": "the prober's own title",
                    "categories": ["prober"],
                    "description": "written by the prober",
                }
            ]
        },
        "PUT /api/v1/users/{user_ref}": {"attributes": {"plan": "prober"}},
        "PATCH /api/v1/tenant/settings": {
            "rate_limit_per_s": 150.0,
            "retention": {"event_retention_days": 400},
        },
        "PATCH /api/v1/privacy-budget": {"epsilon_total": 20.0},
        "POST /api/v1/training-runs": {"epsilon": 1.0},
        "POST /api/v1/popularity-release": {"epsilon": 0.5},
    }
    if not op.has_body:
        return None
    assert op.name in bodies, f"add a request body for {op.name} to the sweep"
    return bodies[op.name]


@dataclass(frozen=True)
class Call:
    op: Operation
    url: str
    body: dict[str, Any] | None

    def sent(self) -> list[str]:
        """Every string this request carried: path segments, query values and body strings."""
        return [p for p in re.split(r"[/?&=]", self.url) if p] + _strings(self.body)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*_strings(k), *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _calls(op: Operation, ids: Ids) -> list[Call]:
    """The requests for one operation: ``ids`` in every path and id-like query parameter; then one call
    per value of an enumerated query parameter (``format=zip|csv``, ``status=...``); then one with only
    the required query parameters (a plain list, where the tenant's own data shows)."""
    path_values = ids.path()
    url = op.path
    for name in op.path_parameters:
        assert name in path_values, f"add a value for path parameter {name!r} of {op.name} to the sweep"
        url = url.replace("{" + name + "}", quote(path_values[name], safe=""))
    query: dict[str, str] = {}
    required: dict[str, str] = {}
    enums: list[tuple[str, list[Any]]] = []
    for param in op.query_parameters:
        name = param["name"]
        if name in ids.query():
            query[name] = ids.query()[name]
            if param.get("required"):
                required[name] = query[name]
            continue
        assert not ID_LIKE_QUERY.search(name), (
            f"add a value for id-like query parameter {name!r} of {op.name}"
        )
        assert not param.get("required"), f"add a value for required query parameter {name!r} of {op.name}"
        if enum := param.get("schema", {}).get("enum"):
            enums.append((name, enum))
    body = _body(op, ids)
    # Every id-like parameter set; then each enumerated value; then only the required ones (a plain list).
    variants = (
        [query] + [{**query, name: str(value)} for name, values in enums for value in values] + [required]
    )
    urls = dict.fromkeys(url + ("?" + urlencode(v) if v else "") for v in variants)
    return [Call(op, u, body) for u in urls]


def _client(auth: dict[str, str]) -> APIClient:
    """A DRF test client that presents these credentials (``TenantPersona.auth``) on every request."""
    client = APIClient()
    client.credentials(**auth)
    return client


def _send(client: APIClient, call: Call) -> Any:
    data = json.dumps(call.body) if call.body is not None else ""
    return client.generic(call.op.method, call.url, data=data, content_type="application/json")


def _visible_text(response: Any) -> str:
    """Everything a client can read in a response: headers, body, and every file of a zip body."""
    raw = b"".join(response.streaming_content) if response.streaming else response.content
    parts = [f"{k}: {v}" for k, v in response.items()]
    if raw.startswith(b"PK\x03\x04"):
        with zipfile.ZipFile(io.BytesIO(raw)) as bundle:
            parts += [bundle.read(name).decode("utf-8", "replace") for name in bundle.namelist()]
    else:
        parts.append(raw.decode("utf-8", "replace"))
    return "\n".join(parts)


# --- tenant data, row by row -------------------------------------------------------------------


def _tenant_tables() -> list[str]:
    """Every table (partitioned parents, not their partitions) with a ``tenant_id`` column."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped"
            " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " ORDER BY c.relname"
        )
        return [row[0] for row in cursor.fetchall() if row[0] not in TELEMETRY_TABLES]


def _fingerprint(tenant_id: int, tables: list[str]) -> dict[str, tuple[int, str]]:
    """Per table: how many rows the tenant has and a digest of their full contents; plus its tenant row."""
    out: dict[str, tuple[int, str]] = {}
    with tenant_context(tenant_id), connection.cursor() as cursor:
        for table in [*tables, "tenancy_tenant"]:
            column = "id" if table == "tenancy_tenant" else "tenant_id"
            name = connection.ops.quote_name(table)
            cursor.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"  # noqa: S608 - names from pg_class
                f" FROM {name} t WHERE t.{column} = %s",
                [tenant_id],
            )
            count, digest = cursor.fetchone()
            out[table] = (int(count), str(digest))
    return out


def _changes(before: dict[str, tuple[int, str]], after: dict[str, tuple[int, str]]) -> list[str]:
    return [
        f"{table}: {before[table][0]} -> {after[table][0]} rows{'' if before[table][0] != after[table][0] else ' (contents changed)'}"
        for table in before
        if before[table] != after[table]
    ]


# --- the personas' data ------------------------------------------------------------------------


@pytest.fixture
def quiet_queues(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No broker traffic: encoding, training and activation tasks are recorded instead of queued."""
    sent: list[str] = []
    monkeypatch.setattr(
        "apps.catalog.services.encoding_enqueue",
        lambda tenant_id, item_pks: sent.append(f"encode:{tenant_id}"),
    )
    monkeypatch.setattr(
        "apps.modeling.services._enqueue", lambda tenant_id, run_id: sent.append(f"train:{tenant_id}")
    )
    monkeypatch.setattr(
        "apps.modeling.lifecycle._enqueue_activation",
        lambda tenant_id, *args: sent.append(f"activate:{tenant_id}"),
    )
    return sent


def _ok(response: Any, *statuses: int) -> Any:
    assert response.status_code in statuses, f"{response.status_code}: {response.content[:500]!r}"
    return response.json()


def _seed_catalog_and_users(
    persona: TenantPersona, mark: str, *, n_items: int, n_users: int, per_user: int
) -> list[str]:
    """Items (fake vectors, no BERT) and events, through the tenant's own key; returns the item ids."""
    client = _client(persona.auth)
    items = [
        {
            "id": f"{mark}-item-{n:03d}",
            "title": f"{mark}-title-{n:03d}",
            "description": f"{mark}-desc-{n:03d}",
            "categories": [f"{mark}-cat-{n % 3}"],
            "attributes": {"secret": f"{mark}-attr-{n:03d}"},
        }
        for n in range(n_items)
    ]
    _ok(client.post("/api/v1/items", {"items": items}, format="json"), 200)
    from apps.catalog.selectors import item_pks_by_external_ids

    ids = [str(item["id"]) for item in items]
    encode_items(persona.tenant.id, list(item_pks_by_external_ids(persona.tenant.id, ids).values()))
    rng = random.Random(mark)
    start = datetime.now(tz=UTC) - timedelta(days=2)
    events = [
        {
            "event_id": f"{mark}-event-{u:03d}-{j}",
            "user": f"{mark}-user-{u:03d}",
            "item": ids[(u % 3) + 3 * rng.randrange(n_items // 3)],
            "type": "rating",
            "value": rng.randint(3, 5),
            "timestamp": (start + timedelta(minutes=u * per_user + j)).isoformat(),
        }
        for u in range(n_users)
        for j in range(per_user)
    ]
    _ok(client.post("/api/v1/events", {"events": events}, format="json"), 201)
    return ids


@dataclass
class World:
    a: TenantPersona
    b: TenantPersona
    b_ids: Ids
    secrets: list[str] = field(default_factory=list)  # none may reach A, beyond what A sent itself
    b_sees: dict[str, str] = field(default_factory=dict)  # a URL, and a secret B's own key reads there


@pytest.fixture
def world(tenant_a: TenantPersona, tenant_b: TenantPersona, quiet_queues: list[str]) -> World:
    from apps.catalog.selectors import item_pks_by_external_ids
    from apps.modeling.training import training_run_execute

    client = _client(tenant_b.auth)
    b_mark = f"bsecret{uuid.uuid4().hex[:12]}"
    rng = random.Random()
    b_epsilon = round(rng.uniform(3.0, 4.0), 9)
    b_budget = round(rng.uniform(40.0, 60.0), 9)
    b_rate = round(rng.uniform(120.0, 190.0), 9)

    # B: 30 items, 40 users with 8 ratings each, attributes, its own settings, a trained model.
    b_items = _seed_catalog_and_users(tenant_b, b_mark, n_items=30, n_users=40, per_user=8)
    _ok(
        client.put(
            f"/api/v1/users/{b_mark}-user-000",
            {"attributes": {"secret": f"{b_mark}-userattr"}},
            format="json",
        ),
        200,
    )
    _ok(client.patch("/api/v1/tenant/settings", {"rate_limit_per_s": b_rate}, format="json"), 200)
    _ok(client.patch("/api/v1/privacy-budget", {"epsilon_total": b_budget}, format="json"), 200)
    run = _ok(client.post("/api/v1/training-runs", {"epsilon": b_epsilon}, format="json"), 202)
    # Served or rejected by the quality gate (the data is random): either way, model version 1 exists.
    assert training_run_execute(tenant_id=tenant_b.tenant.id, run_id=run["id"]) in {"succeeded", "rejected"}
    versions = _ok(client.get("/api/v1/model-versions"), 200)["versions"]
    assert [v["version"] for v in versions] == [1]
    b_pks = item_pks_by_external_ids(tenant_b.tenant.id, b_items)

    # A: a small catalogue and user base of its own, with ids B never uses.
    _seed_catalog_and_users(tenant_a, f"aown{uuid.uuid4().hex[:12]}", n_items=9, n_users=12, per_user=2)

    with tenant_context(tenant_b.tenant.id):
        from apps.tenancy.models import ApiKey

        b_prefixes = list(
            ApiKey.objects.filter(tenant_id=tenant_b.tenant.id).values_list("prefix", flat=True)
        )
    return World(
        a=tenant_a,
        b=tenant_b,
        b_ids=Ids(
            item=b_items[0],
            event_item=b_items[1],
            event_id=f"{b_mark}-event-000-0",
            user=f"{b_mark}-user-000",
            run_id=int(run["id"]),
            version=1,
            cursor=str(min(b_pks.values())),
            category=f"{b_mark}-cat-0",
            title=f"{b_mark}-title-000",
        ),
        secrets=[
            b_mark,
            tenant_b.slug,
            tenant_b.key,
            *b_prefixes,
            repr(b_epsilon),
            repr(b_budget),
            repr(b_rate),
        ],
        b_sees={
            "/api/v1/items": b_mark,
            "/api/v1/audit/export": b_prefixes[0],
            "/api/v1/training-runs": repr(b_epsilon),
            "/api/v1/privacy-budget": repr(b_budget),
            "/api/v1/tenant/settings": repr(b_rate),
        },
    )


# --- the sweep ---------------------------------------------------------------------------------


@dataclass
class Row:
    call: Call
    status: int
    problems: list[str]


def _table(rows: list[Row]) -> str:
    width = max(len(r.call.op.method + " " + r.call.url) for r in rows)
    lines = [
        f"{'FAIL' if r.problems else 'ok  '} {r.status:3d}  {(r.call.op.method + ' ' + r.call.url):<{width}}  "
        + "; ".join(r.problems)
        for r in rows
    ]
    return "\n".join(lines)


def _leaks(text: str, sent: list[str], secrets: list[str]) -> list[str]:
    """The secrets in ``text`` once the ids A sent itself (or stored as its own) are taken out."""
    for value in sorted(set(sent), key=len, reverse=True):
        if any(secret in value for secret in secrets):  # B's id, in A's own request: A's to see echoed
            text = text.replace(value, "")
    return [secret for secret in secrets if secret in text]


def _sweep(
    client: APIClient, ops: list[Operation], ids: Ids, check: Callable[[Call, Any], list[str]]
) -> list[Row]:
    rows: list[Row] = []
    for op in ops:
        for call in _calls(op, ids):
            response = _send(client, call)
            problems = [f"server error {response.status_code}"] if response.status_code >= 500 else []
            rows.append(Row(call, response.status_code, problems + check(call, response)))
    return rows


def test_the_schema_yields_every_operation_under_api_v1(anon: APIClient, live_db: None) -> None:
    ops = _schema_operations(anon)
    names = {op.name for op in ops}
    assert len(ops) >= MIN_OPERATIONS, f"only {len(ops)} operations in the schema: {sorted(names)}"
    assert len([op for op in ops if op.method in WRITE_METHODS]) >= MIN_WRITE_OPERATIONS
    assert {
        "GET /api/v1/items/{external_id}",
        "POST /api/v1/events",
        "GET /api/v1/training-runs/{run_id}",
        "POST /api/v1/model-versions/{version}/activate",
        "DELETE /api/v1/users/{user_ref}",
        "GET /api/v1/audit/export",
    } <= names


def test_tenant_a_calling_every_operation_with_tenant_b_ids_sees_and_changes_nothing_of_b(
    world: World, anon: APIClient
) -> None:
    # Given B's data and its fingerprint, row by row, and every operation the schema lists
    ops = _schema_operations(anon)
    assert len(ops) >= MIN_OPERATIONS
    tables = _tenant_tables()
    assert {"catalog_item", "modeling_trainingrun", "modeling_modelversion"} <= set(tables), tables
    baseline = _fingerprint(world.b.tenant.id, tables)
    assert baseline["catalog_item"][0] == 30 and baseline["modeling_modelversion"][0] == 1
    owned_by_a: list[str] = []  # B's ids A has since created in its own namespace (an upsert by client id)

    def check(call: Call, response: Any) -> list[str]:
        problems = []
        leaked = _leaks(_visible_text(response), [*call.sent(), *owned_by_a], world.secrets)
        if leaked:
            problems.append(f"B's data in the answer: {leaked}")
        op = call.op
        if op.path_parameters and op.method != "PUT" and response.status_code != 404:
            problems.append("expected 404: B's object must look like one that does not exist")
        if op.name == "POST /api/v1/events" and response.status_code != 400:
            problems.append("expected 400: events on B's items are events on unknown items")
        if op.method in WRITE_METHODS and 200 <= response.status_code < 300:
            owned_by_a.extend(call.sent())  # a write A made may have stored B's ids as A's own
        changed = _changes(baseline, _fingerprint(world.b.tenant.id, tables))
        if changed:
            problems.append(f"B's rows changed: {changed}")
        return problems

    # When A calls each of them with B's ids
    rows = _sweep(_client(world.a.auth), ops, world.b_ids, check)

    # then no answer is a 5xx, none shows B's data, B's lookups answer 404 and none of B's rows changed
    assert len({r.call.op.name for r in rows}) >= MIN_OPERATIONS
    assert not any(r.problems for r in rows), "\n" + _table(rows)
    assert _fingerprint(world.b.tenant.id, tables) == baseline
    # and the checks were live: B's own key reads its secrets, and B's own delete shows in its rows
    as_b = _client(world.b.auth)
    for url, secret in world.b_sees.items():
        assert secret in _leaks(_visible_text(as_b.get(url)), [], world.secrets), url
    deleted = as_b.delete(f"/api/v1/items/{world.b_ids.item}")
    assert deleted.status_code == 204
    assert any(
        c.startswith("catalog_item: 30 -> 29")
        for c in _changes(baseline, _fingerprint(world.b.tenant.id, tables))
    )


@pytest.fixture
def tenant_a_with_data(tenant_a: TenantPersona, quiet_queues: list[str]) -> Ids:
    mark = f"aown{uuid.uuid4().hex[:12]}"
    items = _seed_catalog_and_users(tenant_a, mark, n_items=6, n_users=3, per_user=2)
    # A has no training run or model version: the write paths that name one must refuse before looking.
    return Ids(
        item=items[0],
        event_item=items[1],
        event_id=f"{mark}-event-sweep",
        user=f"{mark}-user-000",
        run_id=1,
        version=1,
        cursor="0",
        category=f"{mark}-cat-0",
        title=f"{mark}-title-000",
    )


def test_a_key_with_only_the_audit_scope_gets_403_on_every_write_operation(
    tenant_a: TenantPersona, tenant_a_with_data: Ids, anon: APIClient
) -> None:
    # Given a reviewer-like key of tenant A (scope audit only) and A's own real ids
    issued = api_key_create(tenant=tenant_a.tenant, name="reviewer", scopes=["audit"], actor="test")
    client = _client({"HTTP_AUTHORIZATION": f"Bearer {issued.raw}"})
    assert client.get("/api/v1/audit/export?format=csv").status_code == 200
    writes = [op for op in _schema_operations(anon) if op.method in WRITE_METHODS]
    assert len(writes) >= MIN_WRITE_OPERATIONS, [op.name for op in writes]
    tables = _tenant_tables()
    before = _fingerprint(tenant_a.tenant.id, tables)

    def check(call: Call, response: Any) -> list[str]:
        return [] if response.status_code == 403 else ["expected 403: the audit scope writes nothing"]

    # When it calls every write operation of the schema on A's own objects
    rows = _sweep(client, writes, tenant_a_with_data, check)

    # then each answers 403 and nothing of A's changed
    assert not any(r.problems for r in rows), "\n" + _table(rows)
    changed = _changes(before, _fingerprint(tenant_a.tenant.id, tables))
    assert changed == [], changed

"""The running API, fuzzed from its own OpenAPI schema, and hostile requests sent by hand.

Personas: ``tenant_a`` (an all-scopes API key, its rate limit lifted so the fuzzer is never
throttled) over a real threaded HTTP server (``live_url``); catalogue items come from
``tests.profiles.conftest.make_items`` (the hash-seeded fake encoder, no BERT).

The fuzzer (schemathesis) loads ``/api/schema/`` from the server and, for every operation under
``/api/v1/``, sends schema-valid (positive) and schema-violating (negative) requests, plus requests
on the seeded items and users so paths reach real rows. It is bounded and reproducible: at most
``EXAMPLES`` examples per operation and mode, derandomized (the same examples on every run), no
example database, and a ``FUZZ_BUDGET_S`` wall-clock budget shared out across the operations (a
slow machine runs fewer examples of each, never none). Every answer must be: not a 5xx; a
status code the operation documents; the documented content type; a body that fits the documented
schema (every response is typed: ``tests/api/test_schema_types.py``); and, for a 4xx, the API's JSON
error shape with a message.
Negative examples also drop or garble the ``Authorization`` header: those must be the documented 401.
Schemathesis' "negative data must be rejected" check is left out on purpose: an empty query value
means "the default" throughout this API (``?format=`` is a zip export), and a schema-violating
object in a query string serialises to no parameter at all, so that check reports valid requests.

The hand cases go over the same real HTTP: 10 MB bodies, JSON nested 100,000 levels deep, NaN and
Infinity literals, NUL bytes, unpaired surrogates, 10,000-character ids, 100,000 events in one
batch, bad ``k`` values and overlong queries. Each must get a clear 4xx JSON error (never a 5xx)
and leave every stored item and event exactly as it was.
"""

from __future__ import annotations

import functools
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from apps.catalog.models import Item
from apps.core.tenant_db import tenant_context
from apps.profiles.models import UserEvent
from apps.profiles.validation import MAX_EVENTS_PER_BATCH
from apps.tenancy.models import ApiKey
from tests.profiles.conftest import event, make_items
from tests.support import TenantPersona

EXAMPLES = 12  # per operation and per mode (positive, negative, on seeded rows)
FUZZ_BUDGET_S = 60.0  # wall clock for the whole fuzzing run (about 25 s on a laptop), shared per operation
ITEMS = [f"i{n}" for n in range(6)]
USERS = [f"u{n}" for n in range(6)]
FuzzCase = Case[APIOperation[Any, Any, Any, Any]]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Work the server would hand to a Celery worker: a session that also runs the worker tests must
# not have it train or encode the fuzzer's tenant. Everything up to the enqueue still runs.
ENQUEUES = (
    "apps.catalog.services.encoding_enqueue",
    "apps.modeling.services._enqueue",
    "apps.modeling.lifecycle._enqueue_activation",
)


# --- helpers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    content_type: str
    body: Any


def send(
    base: str,
    persona: TenantPersona,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str = "application/json",
) -> Answer:
    """One request over real HTTP; ``path`` goes on the wire exactly as given (already quoted)."""
    headers = {**persona.headers, "Content-Type": content_type} if body is not None else dict(persona.headers)
    request = urllib.request.Request(base + path, data=body, method=method, headers=headers)  # noqa: S310 - our 127.0.0.1 server
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - our 127.0.0.1 server
            status, ctype, raw = response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        status, ctype, raw = exc.code, exc.headers.get("Content-Type", ""), exc.read()
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw[:300]
    return Answer(status, ctype, parsed)


def error_problem(status: int, content_type: str, body: Any) -> str | None:
    """What is wrong with a 4xx answer (None when it is the API's JSON error with a message)."""
    if not content_type.startswith("application/json"):
        return f"content type {content_type!r}, not JSON"
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or set(error) != {"code", "message", "details"}:
        return f"not the error shape: {str(body)[:200]}"
    if (
        not isinstance(error["code"], str)
        or not isinstance(error["message"], str)
        or not error["message"].strip()
    ):
        return f"error without a code or message: {error}"
    return None


def refused(answer: Answer, *statuses: int) -> str:
    """Assert a clear JSON error with one of ``statuses``; returns its message."""
    assert answer.status < 500, f"server error {answer.status}: {answer.body}"
    assert answer.status in statuses, f"expected {statuses}, got {answer.status}: {answer.body}"
    problem = error_problem(answer.status, answer.content_type, answer.body)
    assert problem is None, problem
    return str(answer.body["error"]["message"])


def snapshot(tenant_id: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Every stored item and event of the tenant, as comparable rows."""
    with tenant_context(tenant_id):
        items = list(
            Item.objects.filter(tenant_id=tenant_id)
            .order_by("pk")
            .values_list(
                "external_id",
                "title",
                "description",
                "categories",
                "attributes",
                "content_hash",
                "updated_at",
            )
        )
        events = list(
            UserEvent.objects.filter(tenant_id=tenant_id)
            .order_by("pk")
            .values_list("event_key", "item_id", "type", "value", "ts")
        )
    return items, [(bytes(key), *rest) for key, *rest in events]


@pytest.fixture
def seeded(tenant_a: TenantPersona, live_url: str) -> Iterator[TenantPersona]:
    """Tenant A with six encoded items, one event per user on them, and no rate limit in the way."""
    with tenant_context(tenant_a.tenant.id):
        ApiKey.objects.filter(tenant=tenant_a.tenant).update(rate_limit_per_s=1e6)
    make_items(tenant_a.tenant.id, ITEMS)
    events = [event(user, item) for user, item in zip(USERS, ITEMS, strict=True)]
    answer = send(live_url, tenant_a, "POST", "/api/v1/events", json.dumps({"events": events}).encode())
    assert answer.status == 201, answer.body
    yield tenant_a


@pytest.fixture
def unchanged(seeded: TenantPersona) -> Iterator[TenantPersona]:
    """The seeded tenant; after the test, its items and events must be exactly as before."""
    before = snapshot(seeded.tenant.id)
    yield seeded
    assert snapshot(seeded.tenant.id) == before, "stored items or events changed"


def nested(depth: int, kind: str) -> bytes:
    return ("[" * depth + "]" * depth if kind == "array" else '{"a":' * depth + "1" + "}" * depth).encode()


# --- the fuzzer --------------------------------------------------------------------------------


@dataclass
class FuzzRun:
    deadline: float = 0.0  # of the operation being fuzzed; its first example runs regardless
    examples: dict[str, int] = field(default_factory=dict)
    skipped: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    def check(self, case: FuzzCase, *, persona: TenantPersona, mode: str) -> None:
        label = case.operation.label
        if label in self.examples and time.monotonic() > self.deadline:
            self.skipped += 1
            return
        self.examples[label] = self.examples.get(label, 0) + 1
        try:
            response = case.call(headers=persona.headers, timeout=30)
        except OSError as exc:  # the connection broke: as bad as a 500
            self.failures.append(f"{label} ({mode}): {type(exc).__name__}: {exc}"[:500])
            return
        self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
        except (AssertionError, BaseExceptionGroup) as exc:
            self.failures.append(f"{label} ({mode}): {exc}"[:1500])
        if 400 <= response.status_code < 500:
            try:
                body = response.json()
            except ValueError:
                body = None
            problem = error_problem(response.status_code, response.headers.get("content-type", [""])[0], body)
            if problem:
                self.failures.append(f"{label} ({mode}) -> {response.status_code}: {problem}")


def fuzz_strategies(
    operation: APIOperation[Any, Any, Any, Any],
) -> list[tuple[str, st.SearchStrategy[FuzzCase]]]:
    """Positive and negative examples, and (for paths with an item or user id) ones on seeded rows."""
    found = [
        ("positive", operation.as_strategy(generation_mode=GenerationMode.POSITIVE)),
        ("negative", operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)),
    ]
    real = {"external_id": ITEMS, "user_ref": USERS}
    names = [name for name in re.findall(r"{(\w+)}", operation.path) if name in real]
    if names:
        name = names[0]
        found.append(
            (
                "seeded",
                st.sampled_from(real[name]).flatmap(
                    lambda value: operation.as_strategy(path_parameters={name: value})
                ),
            )
        )
    return found


def run_examples(strategy: st.SearchStrategy[FuzzCase], body: Callable[[FuzzCase], None]) -> bool:
    """Run ``body`` on up to ``EXAMPLES`` derandomized examples; False when none can be generated."""

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case: FuzzCase) -> None:
        body(case)

    try:
        run()
    except Unsatisfiable:  # e.g. negative examples of an operation with nothing to violate
        return False
    return True


@pytest.mark.slow
def test_every_operation_survives_schema_driven_fuzzing_without_a_5xx_or_a_schema_violation(seeded, live_url):
    schema = schemathesis.openapi.from_url(
        f"{live_url}/api/schema/?format=json", config=schemathesis.Config()
    )
    results = list(schema.include(path_regex=r"^/api/v1/").get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the schema has operations schemathesis cannot read"
    operations.sort(key=lambda op: op.method.upper() == "DELETE")  # reads and writes first, then deletes
    assert len(operations) >= 25, [op.label for op in operations]

    run = FuzzRun()
    started = time.monotonic()
    with mock.patch(ENQUEUES[0]), mock.patch(ENQUEUES[1]), mock.patch(ENQUEUES[2]):
        for done, operation in enumerate(operations):
            # an even share of the time left: a slow machine runs fewer examples, never skips an operation
            run.deadline = time.monotonic() + (started + FUZZ_BUDGET_S - time.monotonic()) / (
                len(operations) - done
            )
            for mode, strategy in fuzz_strategies(operation):
                run_examples(strategy, functools.partial(run.check, persona=seeded, mode=mode))
    elapsed = time.monotonic() - started

    summary = (
        f"{sum(run.examples.values())} requests over {len(run.examples)} operations in {elapsed:.1f} s "
        f"({run.skipped} examples skipped for time); statuses {dict(sorted(run.statuses.items()))}"
    )
    assert not run.failures, summary + "\n\n" + "\n\n".join(run.failures[:20])
    assert {op.label for op in operations} == set(run.examples), summary
    assert not any(code >= 500 for code in run.statuses), summary


# --- hand cases --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/items"])
def test_a_10_mb_body_is_refused_with_413_naming_the_limit(unchanged, live_url, path):
    key = path.rsplit("/", 1)[1]
    body = json.dumps({key: [{"title": "x" * 1000, "id": f"big{n}"} for n in range(10 * 1024)]}).encode()
    assert len(body) > 10 * 1024 * 1024

    message = refused(send(live_url, unchanged, "POST", path, body), 413)

    assert "larger than" in message and "bytes" in message


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/events"),
        ("POST", "/api/v1/items"),
        ("PUT", "/api/v1/users/u0"),
        ("PATCH", "/api/v1/tenant/settings"),
    ],
)
def test_json_nested_100000_levels_deep_is_a_400_parse_error_not_a_500(
    unchanged, live_url, method, path, kind
):
    message = refused(send(live_url, unchanged, method, path, nested(100_000, kind)), 400)

    assert "nested too deeply" in message


@pytest.mark.parametrize("kind", ["array", "object"])
@pytest.mark.parametrize("depth", [900, 990])
def test_json_nested_about_a_thousand_levels_inside_a_valid_envelope_is_a_400(
    unchanged, live_url, depth, kind
):
    deep = nested(depth, kind)
    for method, path, body in [
        ("POST", "/api/v1/events", b'{"events": [' + deep + b"]}"),
        (
            "POST",
            "/api/v1/items",
            b'{"items": [{"id": "d", "title": "t", "attributes": {"a": ' + deep + b"}}]}",
        ),
        ("PUT", "/api/v1/users/u0", b'{"attributes": {"a": ' + deep + b"}}"),
        ("PATCH", "/api/v1/tenant/settings", b'{"slo_objectives": {"search": ' + deep + b"}}"),
        ("POST", "/api/v1/popularity-release", b'{"epsilon": ' + deep + b"}"),
    ]:
        refused(send(live_url, unchanged, method, path, body), 400)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_in_json_numbers_are_refused_as_parse_errors(unchanged, live_url, literal):
    ev = json.dumps({"events": [{**event("u0", "i0"), "value": 1}]}).replace(
        '"value": 1', f'"value": {literal}'
    )
    for method, path, body in [
        ("POST", "/api/v1/events", ev),
        ("POST", "/api/v1/items", '{"items": [{"id": "n", "title": "t", "attributes": {"x": LITERAL}}]}'),
        ("PUT", "/api/v1/users/u0", '{"attributes": {"x": LITERAL}}'),
        ("PATCH", "/api/v1/tenant/settings", '{"rate_limit_per_s": LITERAL}'),
        ("POST", "/api/v1/popularity-release", '{"epsilon": LITERAL}'),
    ]:
        message = refused(
            send(live_url, unchanged, method, path, body.replace("LITERAL", literal).encode()), 400
        )
        assert literal in message, message


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_in_numeric_query_parameters_are_400s_naming_the_parameter(
    unchanged, live_url, literal
):
    for path, name in [
        (f"/api/v1/search?q=shoes&k={literal}", "k"),
        (f"/api/v1/recommendations?user=u0&k={literal}", "k"),
        (f"/api/v1/recommendations?user=u0&diversity={literal}", "diversity"),
        (f"/api/v1/items?limit={literal}", "limit"),
    ]:
        assert refused(send(live_url, unchanged, "GET", path), 400).startswith(name)


def test_nul_bytes_in_ids_titles_and_attributes_of_a_body_are_400s(unchanged, live_url):
    nul = "a\u0000b"
    for method, path, body, says in [
        ("POST", "/api/v1/events", {"events": [event(nul, "i0")]}, "invalid"),
        ("POST", "/api/v1/events", {"events": [event("u0", nul)]}, "invalid"),
        ("POST", "/api/v1/events", {"events": [event("u0", "i0", event_id=nul)]}, "invalid"),
        ("POST", "/api/v1/items", {"items": [{"id": nul, "title": "t"}]}, "NUL"),
        ("POST", "/api/v1/items", {"items": [{"id": "n", "title": nul}]}, "NUL"),
        ("POST", "/api/v1/items", {"items": [{"id": "n", "title": "t", "attributes": {nul: "x"}}]}, "NUL"),
        ("PUT", "/api/v1/users/u0", {"attributes": {"x": "y", nul: "z"}}, "invalid"),
    ]:
        assert says in refused(send(live_url, unchanged, method, path, json.dumps(body).encode()), 400)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/items/a%00b"),  # the item id path parameter: these three were 500s
        ("DELETE", "/api/v1/items/a%00b"),
        ("GET", "/api/v1/items/a%00b/similar"),
        ("GET", "/api/v1/items?category=a%00b"),  # the category filters: were 500s too
        ("GET", "/api/v1/items/i0/similar?category=a%00b"),
        ("GET", "/api/v1/users/a%00b"),
        ("DELETE", "/api/v1/users/a%00b"),
        ("GET", "/api/v1/search?q=a%00b"),
        ("GET", "/api/v1/search?q=shoes&user=a%00b"),
        ("GET", "/api/v1/recommendations?user=a%00b"),
        ("GET", "/api/v1/recommendations?user=u0&category=a%00b"),
        ("GET", "/api/v1/audit/export?since=%00"),
    ],
)
def test_nul_bytes_in_paths_and_query_parameters_are_400s_not_database_errors(
    unchanged, live_url, method, path
):
    message = refused(send(live_url, unchanged, method, path), 400)

    assert "NUL" in message or "control characters" in message or "ISO 8601" in message, message


def test_unpaired_surrogates_are_refused_but_escaped_emoji_pairs_are_stored(seeded, live_url):
    before = snapshot(seeded.tenant.id)
    for method, path, body in [
        ("POST", "/api/v1/items", r'{"items": [{"id": "\ud800", "title": "t"}]}'),  # were 500s (PostgreSQL)
        ("POST", "/api/v1/items", r'{"items": [{"id": "s", "title": "t", "categories": ["\udfff"]}]}'),
        ("PATCH", "/api/v1/tenant/settings", r'{"\ud800": 1}'),  # were 500s (the error echoed the key)
        ("PATCH", "/api/v1/tenant/settings", r'{"model": {"dp_design": "\ud800"}}'),
        ("PATCH", "/api/v1/privacy-budget", r'{"\ud800": 1}'),
        (
            "POST",
            "/api/v1/events",
            r'{"events": [{"event_id": "e", "user": "\ud800", "item": "i0", "type": "view"}]}',
        ),
    ]:
        assert "unpaired surrogates" in refused(send(live_url, seeded, method, path, body.encode()), 400)
    assert snapshot(seeded.tenant.id) == before

    with mock.patch(ENQUEUES[0]):
        stored = send(
            live_url, seeded, "POST", "/api/v1/items", rb'{"items": [{"id": "e1", "title": "\ud83d\ude00"}]}'
        )
    assert stored.status == 200, stored.body
    assert send(live_url, seeded, "GET", "/api/v1/items/e1").body["title"] == "\N{GRINNING FACE}"


def test_ten_thousand_character_ids_are_refused_with_the_length_limit(unchanged, live_url):
    long = "x" * 10_000
    for method, path, body, limit in [
        ("POST", "/api/v1/items", {"items": [{"id": long, "title": "t"}]}, "200"),
        ("POST", "/api/v1/events", {"events": [event(long, "i0")]}, "256"),
        ("POST", "/api/v1/events", {"events": [event("u0", long)]}, "200"),
        ("POST", "/api/v1/events", {"events": [event("u0", "i0", event_id=long)]}, "128"),
    ]:
        answer = send(live_url, unchanged, method, path, json.dumps(body).encode())
        refused(answer, 400)
        assert limit in json.dumps(answer.body["error"])
    for method in ("GET", "PUT", "DELETE"):
        attributes = b'{"attributes": {}}' if method == "PUT" else None
        assert "at most 256" in refused(
            send(live_url, unchanged, method, f"/api/v1/users/{long}", attributes), 400
        )
    for method, path in [
        ("GET", f"/api/v1/items/{long}"),
        ("DELETE", f"/api/v1/items/{long}"),
        ("GET", f"/api/v1/items/{long}/similar"),
    ]:
        assert "no item with id" in refused(send(live_url, unchanged, method, path), 404)
    assert "at most 256" in refused(
        send(live_url, unchanged, "GET", f"/api/v1/recommendations?user={long}"), 400
    )


def test_100000_events_in_one_batch_are_refused_with_the_batch_limit_and_nothing_is_stored(
    unchanged, live_url
):
    events = [{"event_id": n, "user": "u0", "item": "i0", "type": "view"} for n in range(100_000)]
    answer = send(live_url, unchanged, "POST", "/api/v1/events", json.dumps({"events": events}).encode())

    message = refused(answer, 413)
    assert str(MAX_EVENTS_PER_BATCH) in message and "100000" in message
    assert answer.body["error"]["details"] == {"max_events": MAX_EVENTS_PER_BATCH, "received": 100_000}


def test_100000_full_events_over_the_body_limit_are_refused_before_parsing(unchanged, live_url):
    events = [event("u0", "i0", event_id=f"e{n}") for n in range(100_000)]
    body = json.dumps({"events": events}).encode()

    assert "bytes" in refused(send(live_url, unchanged, "POST", "/api/v1/events", body), 413)


@pytest.mark.parametrize("k", ["0", "-1", str(10**9), "abc"])
@pytest.mark.parametrize(
    "path", ["/api/v1/search?q=shoes", "/api/v1/recommendations?user=u0", "/api/v1/items/i0/similar?q="]
)
def test_k_outside_1_to_100_is_a_400_naming_k(unchanged, live_url, path, k):
    message = refused(send(live_url, unchanged, "GET", f"{path}&k={urllib.parse.quote(k)}"), 400)

    assert message.startswith("k must be") and "100" in message


def test_a_10000_character_search_query_is_a_400_naming_the_limit(unchanged, live_url):
    message = refused(
        send(live_url, unchanged, "GET", "/api/v1/search?q=" + urllib.parse.quote("shoe " * 2000)), 400
    )

    assert "at most 512 characters" in message

"""The Python client (clients/python, ``sotto_client``) against the real app over real HTTP, and its
retry rules against a scripted local server (Retry-After honoured, giving up, never resending a
budget charge whose outcome is unknown)."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sotto_client import ItemInput, SottoClient, SottoConnectionError, SottoError
from tests.profiles.conftest import make_items

# --- against the real app ----------------------------------------------------------------------


def test_it_upserts_items_and_a_resend_changes_nothing(live_url, tenant_a, monkeypatch):
    # Given tenant A's client over real HTTP, and no encoding task sent (so that a Celery worker
    # started by another test of the session cannot encode them: new items stay pending)
    monkeypatch.setattr("apps.catalog.services.encoding_enqueue", lambda **kwargs: 0)
    client = SottoClient(live_url, tenant_a.key, timeout=30)
    items: list[ItemInput] = [
        {"id": "sku/1", "title": "Red running shoes", "categories": ["shoes"]},
        {"id": "sku 2", "title": "Blue rain jacket", "description": "Light", "available": True},
    ]

    # When the items are upserted twice, Then the second time nothing is created or queued again
    assert client.items_upsert(items) == {
        "received": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "queued_for_encoding": 2,
    }
    assert client.items_upsert(items)["unchanged"] == 2
    # and the catalogue status and one item (an id with '/' and one with a space) read back
    assert client.catalog_status() == {"items": 2, "pending": 2, "ready": 0, "failed": 0, "truncated": 0}
    assert client.item_get("sku/1")["encoding"]["status"] == "pending"
    assert client.item_get("sku 2")["title"] == "Blue rain jacket"
    assert client.tenant()["tenant"] == tenant_a.slug


def test_a_resent_event_batch_is_all_duplicates_and_recommendations_follow_it(live_url, tenant_a):
    # Given four encoded items (hash-seeded vectors) and events without ids
    make_items(tenant_a.tenant.id, [f"i{n}" for n in range(4)])
    client = SottoClient(live_url, tenant_a.key, timeout=30)
    events: list[dict[str, Any]] = [
        {"user": "u1", "item": "i0", "type": "view"},
        {"user": "u1", "item": "i1", "type": "rating", "value": 5},
    ]

    # When the same list is sent twice
    first = client.events_ingest(events)
    second = client.events_ingest(events)

    # Then the client gave each event an id before sending, and the resend stored nothing twice
    assert all(len(e["event_id"]) == 32 for e in events) and events[0]["event_id"] != events[1]["event_id"]
    assert first == {"accepted": 2, "new": 2, "duplicates": 0, "pending": 0}
    assert second == {"accepted": 2, "new": 0, "duplicates": 2, "pending": 0}
    # and recommendations for u1 leave out what u1 has seen, ranked from u1's history (no model yet)
    recs = client.recommendations("u1", k=5)
    assert recs["strategy"] == "content" and recs["model_version"] is None
    assert {i["id"] for i in recs["items"]} == {"i2", "i3"}
    assert len(client.recommendations("u1", k=5, exclude_seen=False)["items"]) == 4
    similar = client.similar_items("i0", k=2)
    assert (
        similar["id"] == "i0"
        and len(similar["items"]) == 2
        and "i0" not in {i["id"] for i in similar["items"]}
    )
    # and the user's export holds both events; erasure returns a receipt, after which the user is unknown
    assert len(client.user_export("u1")["events"]) == 2
    assert client.user_erase("u1")["key_destroyed"] is True
    with pytest.raises(SottoError) as gone:
        client.user_erase("u1")
    assert (gone.value.status, gone.value.code) == (404, "not_found")


def test_4xx_answers_raise_sotto_error_with_the_servers_code_message_and_details(live_url, tenant_a):
    client = SottoClient(live_url, tenant_a.key, timeout=30)

    with pytest.raises(SottoError) as missing:
        client.similar_items("no-such-item")
    assert (missing.value.status, missing.value.code) == (404, "not_found")
    assert "no-such-item" in missing.value.message and missing.value.request_id
    assert missing.value.attempts == 1  # a 404 is never retried

    with pytest.raises(SottoError) as invalid:
        client.events_ingest([{"user": "u1", "item": "no-such-item", "type": "teleport"}])
    assert invalid.value.status == 400 and invalid.value.code.startswith("invalid") and invalid.value.details

    with pytest.raises(SottoError) as anonymous:
        SottoClient(live_url, "sotto_not_a_key", timeout=30).catalog_status()
    assert (anonymous.value.status, anonymous.value.code) == (401, "unauthenticated")

    budget = client.privacy_budget()
    assert budget["epsilon_spent"] == 0
    assert client.training_runs_list() == []


# --- retries, against a scripted server --------------------------------------------------------


@dataclass
class Scripted:
    """A local HTTP server answering from a script: (status, headers, body, delay in seconds) per request."""

    answers: list[tuple[int, dict[str, str], Any, float]]
    seen: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    state = Scripted(answers=[])

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.seen.append(
                {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                    "at": time.monotonic(),
                }
            )
            status, headers, payload, delay = state.answers.pop(0) if state.answers else (500, {}, {}, 0.0)
            time.sleep(delay)
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client timed out and went away

        do_GET = do_POST = _answer  # noqa: N815 - http.server's method names

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": f"{code}; nothing was stored, retry", "details": {}}}


CREATED = {"accepted": 1, "new": 1, "duplicates": 0, "pending": 0}


def test_it_waits_what_retry_after_says_after_a_503_and_resends_the_same_events(scripted):
    # Given a server that answers 503 write_conflict with Retry-After: 1, then 201
    scripted.answers = [(503, {"Retry-After": "1"}, _error("write_conflict"), 0.0), (201, {}, CREATED, 0.0)]
    client = SottoClient(scripted.url, "sotto_k", max_retries=3, backoff=0.01)

    # When one event without an id is sent
    started = time.monotonic()
    answer = client.events_ingest([{"user": "u1", "item": "i1", "type": "view"}])

    # Then the client waited at least the second it was told to, and succeeded on the resend
    assert time.monotonic() - started >= 1.0
    assert answer == CREATED
    first, second = scripted.seen
    assert second["at"] - first["at"] >= 1.0
    # and the resend is the same request: same event id, same X-Request-ID, the key as a Bearer token
    assert first["body"] == second["body"] and len(first["body"]["events"][0]["event_id"]) == 32
    assert first["headers"]["x-request-id"] == second["headers"]["x-request-id"]
    assert first["headers"]["authorization"] == "Bearer sotto_k"


def test_it_honours_retry_after_on_429_too(scripted):
    scripted.answers = [
        (429, {"Retry-After": "1"}, _error("rate_limited"), 0.0),
        (200, {}, {"items": 0, "pending": 0, "ready": 0, "failed": 0, "truncated": 0}, 0.0),
    ]
    started = time.monotonic()
    assert SottoClient(scripted.url, "k", backoff=0.01).catalog_status()["items"] == 0
    assert time.monotonic() - started >= 1.0 and len(scripted.seen) == 2


def test_it_gives_up_after_max_retries_with_the_last_error(scripted):
    # Given a server that keeps answering 503 database_unavailable
    scripted.answers = [(503, {"Retry-After": "0"}, _error("database_unavailable"), 0.0)] * 5
    client = SottoClient(scripted.url, "k", max_retries=2)

    # When a call is made, Then it is sent 1 + max_retries times and the last 503 is raised, typed
    with pytest.raises(SottoError) as raised:
        client.recommendations("u1")
    assert len(scripted.seen) == 3
    error = raised.value
    assert (error.status, error.code, error.attempts, error.retry_after) == (
        503,
        "database_unavailable",
        3,
        0.0,
    )
    assert error.retryable and scripted.seen[0]["path"].startswith("/api/v1/recommendations?user=u1&k=10")


def test_a_timed_out_training_start_is_never_resent_but_a_timed_out_read_is(scripted):
    # Given a server slower than the client's timeout once
    scripted.answers = [(202, {}, {"id": 1}, 1.0)]
    client = SottoClient(scripted.url, "k", timeout=0.3, max_retries=3, backoff=0.01)

    # When a training run is started, Then the timeout is raised after one request (a resend could charge twice)
    with pytest.raises(SottoConnectionError) as raised:
        client.training_run_start(4.0)
    assert raised.value.code == "timeout" and raised.value.status == 0
    time.sleep(1.0)  # let the slow answer finish before counting
    assert len(scripted.seen) == 1

    # and a read that times out once is simply sent again
    scripted.answers = [(200, {}, {"id": 1}, 1.0), (200, {}, {"id": 1, "status": "queued"}, 0.0)]
    assert client.training_run_get(1) == {"id": 1, "status": "queued"}
    assert len(scripted.seen) == 3


def test_a_refused_connection_is_retried_and_then_raised_as_a_connection_error():
    # Given nothing listening on the port (bound and closed at once)
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = SottoClient(f"http://127.0.0.1:{port}", "k", max_retries=1, backoff=0.01)
    with pytest.raises(SottoConnectionError) as raised:
        client.training_run_start(1.0)
    assert raised.value.code == "connection_error" and raised.value.attempts == 2


def test_a_redirect_is_reported_not_followed_so_the_key_goes_nowhere_else(scripted):
    # Given a server that redirects (plain HTTP to HTTPS, say) to another host
    scripted.answers = [(301, {"Location": "https://elsewhere.example/api/v1/events"}, {}, 0.0)]

    # When events are sent, Then the redirect is raised with its location and nothing is sent anywhere else
    with pytest.raises(SottoError) as raised:
        SottoClient(scripted.url, "sotto_k").events_ingest([{"user": "u1", "item": "i1", "type": "view"}])
    assert (raised.value.status, raised.value.code) == (301, "redirect")
    assert raised.value.details == {"location": "https://elsewhere.example/api/v1/events"}
    assert len(scripted.seen) == 1


def test_it_refuses_urls_that_are_not_http():
    with pytest.raises(ValueError, match="http"):
        SottoClient("file:///etc/passwd", "k")
    assert "sotto_secret" not in repr(SottoClient("http://x", "sotto_secret"))


def test_the_demos_http_check_calls_the_running_server_through_the_client(live_url, tenant_a, tmp_path):
    import io

    from apps.demo.steps import client_check_step

    # Given a MovieLens-format folder whose first movie and first user exist on the tenant
    (tmp_path / "movies.csv").write_text("movieId,title,genres\nm1,Toy Story (1995),Animation\n")
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\nu7,m1,4.0,964982703\n")
    make_items(tenant_a.tenant.id, ["m1", "m2", "m3"])
    SottoClient(live_url, tenant_a.key).events_ingest([{"user": "u7", "item": "m1", "type": "view"}])

    # When the demo's last step runs against the server, Then each call answered and is shown
    steps: list[str] = []
    out = io.StringIO()
    assert client_check_step(
        base=live_url, key=tenant_a.key, directory=tmp_path, step=steps.append, stdout=out
    )
    text = out.getvalue()
    assert "Python client" in steps[0], steps
    assert re.search(r"client\.catalog_status\(\) +-> 3 items, 3 encoded", text), text
    assert re.search(r"client\.recommendations\('u7', k=3\) +-> content: m[23], m[23]\n", text), text
    assert re.search(r"client\.similar_items\('m1', k=3\) +-> m[23], m[23]\n", text), text

    # and a key the server refuses is reported, not raised
    out = io.StringIO()
    assert not client_check_step(
        base=live_url, key="sotto_bad", directory=tmp_path, step=steps.append, stdout=out
    )
    assert "401 unauthenticated" in out.getvalue()

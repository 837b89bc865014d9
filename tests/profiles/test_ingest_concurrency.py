"""Ingest while the catalogue is being encoded: no deadlock, no 5xx, every event stored.

The cycle this guards against (seen as a 500 in the field): an ingest transaction locks a user's
state row, then its event INSERT takes FOR KEY SHARE on the item (the foreign key check); the
encoding transaction locked those items FOR UPDATE, then folds pending events into the same user's
state. Encoding now locks items FOR NO KEY UPDATE, which a foreign key check does not wait for, and
any remaining deadlock or serialization failure is rerun inside the server (``TenantAPIView``).

Personas: ``tenant_a`` (all-scopes key) over a real HTTP server (``live_url``); the encoder is the
hash-seeded fake of ``tests.profiles.conftest`` (the services around it are the real ones).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from typing import Any
from unittest import mock

import psycopg
from django.db import OperationalError, connection

from apps.catalog.services import items_encode
from apps.core.tenant_db import tenant_context
from apps.profiles.models import UserEvent
from tests.profiles.conftest import FakeEncoder, encode_items, event, make_items, state_of

URL = "/api/v1/events"


def post_http(base: str, persona: Any, events: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    body = json.dumps({"events": events}).encode()
    request = urllib.request.Request(  # noqa: S310 - our own 127.0.0.1 server
        base + URL,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", **persona.headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - our own 127.0.0.1 server
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def stored(tenant_id: int) -> int:
    with tenant_context(tenant_id):
        return UserEvent.objects.filter(tenant_id=tenant_id).count()


def test_an_encoding_transaction_holding_item_locks_does_not_block_ingest_of_those_items(tenant_a, live_url):
    # Given: item x is pending, and user u already has a pending event on it, so the encoding
    # transaction will fold into u's state after locking x.
    tenant_id = tenant_a.tenant.id
    pks = make_items(tenant_id, ["x", "y"], encode=False)
    encode_items(tenant_id, [pks["y"]])
    status, _ = post_http(live_url, tenant_a, [event("u", "x")])
    assert status == 201
    # When: encoding x pauses inside its write transaction (items locked, vector not yet written)
    # and, meanwhile, u sends events on x over HTTP.
    from apps.catalog.vectors import vectors_write as real_write

    locked, ingested = threading.Event(), threading.Event()
    waited_out: list[bool] = []

    def write_after_ingest(**kwargs: Any) -> None:
        locked.set()
        waited_out.append(not ingested.wait(timeout=15))
        real_write(**kwargs)

    errors: list[BaseException] = []

    def encode() -> None:
        try:
            with mock.patch("apps.catalog.services.vectors_write", side_effect=write_after_ingest):
                encode_items(tenant_id, [pks["x"]])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=encode)
    worker.start()
    assert locked.wait(timeout=30), "the encoding transaction never reached its write"
    status, body = post_http(live_url, tenant_a, [event("u", "x"), event("u", "y")])
    ingested.set()
    worker.join(timeout=60)
    # Then: ingest went through while encoding still held its locks, and both committed.
    assert status == 201, body
    assert waited_out == [False], "ingest waited for the encoding transaction's item locks"
    assert not errors, errors
    assert stored(tenant_id) == 3
    assert state_of(tenant_id, "u")["n_events"] == 3  # the pending event was folded as well


def test_ingest_batches_running_beside_encoding_get_no_5xx_and_lose_no_event(tenant_a, live_url):
    # Given: 120 items not yet encoded; When: 4 clients send 6 batches each over HTTP that all touch
    # the same users and items while two threads encode those items in small batches;
    tenant_id = tenant_a.tenant.id
    ids = [f"c{n}" for n in range(120)]
    pks = make_items(tenant_id, ids, encode=False)
    users = [f"user{n}" for n in range(8)]
    statuses: list[int] = []
    errors: list[BaseException] = []
    sent: set[str] = set()
    lock = threading.Lock()

    def client(k: int) -> None:
        try:
            for b in range(6):
                batch = [
                    event(users[(k + b + j) % len(users)], ids[(17 * (k * 6 + b) + 7 * j) % len(ids)])
                    for j in range(40)
                ]
                status, _ = post_http(live_url, tenant_a, batch)
                with lock:
                    statuses.append(status)
                    if status == 201:
                        sent.update(e["event_id"] for e in batch)
        except BaseException as exc:
            errors.append(exc)

    def encoder(part: list[int]) -> None:
        try:
            for start in range(0, len(part), 10):
                items_encode(tenant_id=tenant_id, item_pks=part[start : start + 10])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    order = [pks[i] for i in ids]
    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    threads += [
        threading.Thread(target=encoder, args=(order[::2],)),
        threading.Thread(target=encoder, args=(order[1::2],)),
    ]
    # one patch for all threads (mock.patch itself is not thread-safe)
    with mock.patch("apps.catalog.encoding.encoder_for_tenant", return_value=FakeEncoder()):
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    # Then: every request was answered 201 and every event is stored exactly once.
    assert not errors, errors
    assert statuses == [201] * 24, statuses
    assert stored(tenant_id) == len(sent) == 24 * 40
    # and, once every item has its vector, every event is folded into its user's state
    from apps.profiles.services import events_fold_stale_pending

    events_fold_stale_pending(tenant_id=tenant_id)
    assert sum(state_of(tenant_id, u)["n_events"] for u in users) == 24 * 40


def _deadlock() -> OperationalError:
    try:
        raise psycopg.errors.DeadlockDetected("deadlock detected")
    except psycopg.errors.DeadlockDetected as cause:
        try:
            raise OperationalError("deadlock detected") from cause
        except OperationalError as exc:
            return exc


def test_a_deadlock_is_rerun_inside_the_server_and_the_batch_is_stored_once(api, tenant_a, items_a):
    # Given: the first attempt's transaction is chosen as a deadlock victim after writing its events
    from apps.profiles import services

    real = services._ingest_write
    calls: list[int] = []

    def victim_once(*args: Any, **kwargs: Any) -> set[bytes]:
        calls.append(1)
        inserted = real(*args, **kwargs)
        if len(calls) == 1:
            raise _deadlock()
        return inserted

    batch = [event("dora", "i1"), event("dora", "i2")]
    with mock.patch.object(services, "_ingest_write", side_effect=victim_once):
        response = api.post(URL, {"events": batch}, format="json", **tenant_a.auth)
    # Then: the client sees one success, and the rolled-back attempt left nothing behind
    assert response.status_code == 201, response.json()
    assert response.json()["new"] == 2
    assert len(calls) == 2
    assert stored(tenant_a.tenant.id) == 2
    assert state_of(tenant_a.tenant.id, "dora")["n_events"] == 2


def test_a_conflict_that_persists_answers_503_with_retry_after_and_stores_nothing(api, tenant_a, items_a):
    from apps.profiles import services

    with mock.patch.object(services, "_ingest_write", side_effect=_deadlock()):
        response = api.post(URL, {"events": [event("erin", "i1")]}, format="json", **tenant_a.auth)
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response.json()["error"]["code"] == "write_conflict"
    assert stored(tenant_a.tenant.id) == 0


def test_a_database_error_that_is_not_a_conflict_answers_503_json_at_once(api, tenant_a, items_a):
    from apps.profiles import services

    calls: list[int] = []

    def gone(*args: Any, **kwargs: Any) -> set[bytes]:
        calls.append(1)
        raise OperationalError("server closed the connection unexpectedly")

    with mock.patch.object(services, "_ingest_write", side_effect=gone):
        response = api.post(URL, {"events": [event("finn", "i1")]}, format="json", **tenant_a.auth)
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"
    assert "Traceback" not in response.content.decode()
    assert calls == [1]  # not a conflict: not rerun


def test_a_body_over_the_limit_still_answers_413_when_the_rerun_buffers_bodies(
    api, tenant_a, items_a, settings
):
    # the rerun buffers each body before the view; one over the limit must still reach DRF's 413
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2048
    body = json.dumps({"events": [event("gus", "i1") for _ in range(40)]})
    response = api.generic("POST", URL, body, content_type="application/json", **tenant_a.auth)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert stored(tenant_a.tenant.id) == 0


def test_the_conflict_helpers_docstring_examples_run():
    import doctest

    from apps.core import db_conflicts

    failures, tried = doctest.testmod(db_conflicts)
    assert tried > 0 and failures == 0

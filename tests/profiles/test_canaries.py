"""Nothing identifying is stored, logged or queued in clear; after erasure nothing decryptable is left.

Given canary user ids, attribute names and values (and event ids that embed the user id), sent through
the real API and every background path that touches them (pending fold via the catalogue hook, key
rotation, retention), then: every text/varchar/char/json/jsonb/array/bytea column of every table
(from information_schema) holds none of them in raw, hex, base64 or unkeyed-SHA-256 form; neither
does any log record (SQL included) nor any Celery message any code sent.

Persona: ``tenant_a`` (all scopes); the scan reads every tenant's rows (``dangerously_as_platform``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from contextlib import contextmanager
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from celery import Celery
from celery.app.task import Task
from django.db import connection

from apps.core.logging import JsonFormatter
from apps.core.tenant_db import dangerously_as_platform, tenant_context
from apps.profiles.models import EndUser, UserAttribute
from apps.tenancy import keyring
from apps.tenancy.pseudonyms import pseudonymise
from tests.profiles.conftest import encode_items, event, make_items

TEXT_TYPES = {"text", "character varying", "character", "json", "jsonb", "ARRAY", "xml", "citext"}


def text_forms(secret: str) -> list[str]:
    raw = secret.encode("utf-8")
    forms = {secret, raw.hex(), hashlib.sha256(raw).hexdigest()}
    for shift in range(3):  # base64 of the secret wherever it sits in a longer blob
        chunk = base64.b64encode(raw[shift:]).decode()[4:-4]
        forms.update({chunk, chunk.replace("+", "-").replace("/", "_")})
    return sorted(forms)


def binary_forms(secret: str) -> list[bytes]:
    raw = secret.encode("utf-8")
    return [raw, secret.encode("utf-16-le"), hashlib.sha256(raw).digest()]


def columns() -> list[tuple[str, str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
            JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
            WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE'
              AND (c.data_type = ANY(%s) OR c.data_type = 'bytea')
            ORDER BY 1, 2
            """,
            [sorted(TEXT_TYPES)],
        )
        return [(str(t), str(c), str(k)) for t, c, k in cursor.fetchall()]


def scan(
    text_needles: list[str], binary_needles: list[bytes], *, skip_tables: tuple[str, ...] = ()
) -> list[str]:
    """``table.column`` for every column holding any needle, across all tenants."""
    qn = connection.ops.quote_name
    hits = []
    with dangerously_as_platform(), connection.cursor() as cursor:
        cols = columns()
        assert any(t == "profiles_userattribute" and c == "ciphertext" for t, c, _ in cols)
        for table, column, kind in cols:
            if table.startswith(skip_tables) if skip_tables else False:
                continue
            if kind == "bytea":
                if not binary_needles:
                    continue
                cursor.execute(
                    f"SELECT count(*) FROM {qn(table)} WHERE EXISTS ("  # noqa: S608 - identifiers from the catalog
                    f"SELECT 1 FROM unnest(%s::bytea[]) AS n WHERE position(n IN {qn(column)}) > 0)",
                    [binary_needles],
                )
            else:
                if not text_needles:
                    continue
                cursor.execute(
                    f"SELECT count(*) FROM {qn(table)} WHERE {qn(column)}::text ILIKE ANY(%s)",  # noqa: S608
                    [[f"%{n}%" for n in text_needles]],
                )
            if cursor.fetchone()[0]:
                hits.append(f"{table}.{column}")
    return hits


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []
        self.formatter_ = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.formatter_.format(record) + repr(record.args))


@contextmanager
def capture_everything():
    """Every log record (SQL with its parameters included) and every Celery message sent, unsent."""
    handler = Capture()
    root = logging.getLogger()
    old_level, sql_logger = root.level, logging.getLogger("django.db.backends")
    old_sql_level = sql_logger.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sql_logger.setLevel(logging.DEBUG)
    connection.force_debug_cursor = True
    messages: list[str] = []

    def record_task(self: Task, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        messages.append(repr((self.name, args, kwargs, options)))
        return mock.Mock(id=str(uuid.uuid4()))

    def record_send(self: Celery, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        messages.append(repr((name, args, kwargs, options)))
        return mock.Mock(id=str(uuid.uuid4()))

    try:
        with (
            mock.patch.object(Task, "apply_async", record_task),
            mock.patch.object(Celery, "send_task", record_send),
        ):
            yield handler.lines, messages
    finally:
        connection.force_debug_cursor = False
        root.removeHandler(handler)
        root.setLevel(old_level)
        sql_logger.setLevel(old_sql_level)


@pytest.fixture
def canaries():
    tag = uuid.uuid4().hex[:12]
    return {
        "user": f"canary.user.{tag}@example.org",
        "user2": f"CanaryUser2-{tag}",
        "attr_name": f"canary_attr_{tag}",
        "attr_value": f"Canary Value {tag} 221B Baker Street",
    }


def test_canaries_reach_no_column_log_or_celery_message_and_erasure_leaves_nothing_decryptable(
    api, tenant_a, canaries
):
    tenant_id = tenant_a.tenant.id
    user, user2 = canaries["user"], canaries["user2"]
    items = make_items(tenant_id, ["c1", "c2"])
    late = make_items(tenant_id, ["c-late"], encode=False)
    path = "/api/v1/users/" + quote(user, safe="")
    secrets = list(canaries.values())

    with capture_everything() as (logs, messages):
        # when: attributes, events (event ids that embed the user id), a pending item folded by the hook
        put = api.put(
            path,
            {"attributes": {canaries["attr_name"]: canaries["attr_value"], "age": 40}},
            format="json",
            **tenant_a.auth,
        )
        assert put.status_code == 201
        batch = [
            event(user, "c1", event_id=f"{user}#1"),
            event(user, "c-late", "purchase", event_id=f"{user}#2"),
            event(user2, "c2", "rating", value=3, event_id=f"{user2}#1"),
        ]
        assert (
            api.post("/api/v1/events", {"events": batch}, format="json", **tenant_a.auth).status_code == 201
        )
        encode_items(tenant_id, [late["c-late"]])
        export = api.get(path, **tenant_a.auth)
        assert (
            export.status_code == 200
            and export.json()["attributes"][canaries["attr_name"]] == canaries["attr_value"]
        )
        # error paths log the request path: they must not log the id
        assert api.put(path, {"attributes": {"x": None}}, format="json", **tenant_a.auth).status_code == 400
        assert (
            api.get("/api/v1/users/" + quote(user + "-nobody", safe=""), **tenant_a.auth).status_code == 404
        )
        assert (
            api.post(
                "/api/v1/events", {"events": [event(user, "missing-item")]}, format="json", **tenant_a.auth
            ).status_code
            == 400
        )
        # background paths: key rotation (queued, then run), retention (queued, then run)
        keyring.tenant_key_rotate(tenant_id=tenant_id, actor="test")
        assert keyring.rotation_complete(tenant_id=tenant_id)
        from apps.profiles.tasks import apply_retention, apply_retention_tenant

        apply_retention.apply()
        apply_retention_tenant.apply(args=[tenant_id])

    # then: nothing in clear anywhere
    text_needles = [form for secret in secrets for form in text_forms(secret)]
    binary_needles = [form for secret in secrets for form in binary_forms(secret)]
    assert scan(text_needles, binary_needles) == []
    assert logs, "the capture saw no log records at all"
    assert any("profiles_userevent" in line for line in logs), "SQL was not captured"
    leaked_logs = [line for line in logs if any(form.lower() in line.lower() for form in text_needles)]
    assert leaked_logs == []
    assert messages, "no Celery message was captured (rotation and retention queue tasks)"
    leaked_messages = [m for m in messages if any(form.lower() in m.lower() for form in text_needles)]
    assert leaked_messages == []

    # given what would decrypt the user's data before erasure
    pseudonym = pseudonymise(tenant_id=tenant_id, user_ref=user)
    with tenant_context(tenant_id):
        row = EndUser.objects.get(tenant_id=tenant_id, pseudonym=pseudonym)
        assert row.wrapped_key is not None
        wrapped_key = bytes(row.wrapped_key)
        ciphertexts = [
            bytes(c) for c in UserAttribute.objects.filter(user=row).values_list("ciphertext", flat=True)
        ]
        tags = [bytes(t) for t in UserAttribute.objects.filter(user=row).values_list("name_tag", flat=True)]
    assert len(ciphertexts) == 2
    assert (
        scan([], [wrapped_key, *ciphertexts]) != []
    )  # the control: the scan does find them while they exist

    # when erased
    receipt = api.delete(path, **tenant_a.auth).json()
    assert receipt["key_destroyed"] is True

    # then no column holds the key, a ciphertext, a name tag or the pseudonym; only the audit chain keeps
    # the pseudonym (as text), by design, to prove the erasure happened
    assert scan([], [wrapped_key, pseudonym, *ciphertexts, *tags]) == []
    assert scan([pseudonym.hex()], [], skip_tables=("audit_",)) == []
    assert scan(text_needles, binary_needles) == []
    with tenant_context(tenant_id):
        assert not EndUser.objects.filter(tenant_id=tenant_id, pseudonym=pseudonym).exists()
    assert api.get(path, **tenant_a.auth).status_code == 404
    assert items  # (the catalogue items stay: they are the tenant's content, not the user's)


def test_the_scan_would_catch_a_leak(tenant_a, canaries):
    """The control for the scan itself: a canary stored in clear anywhere is found, in any of its forms."""
    tenant_id = tenant_a.tenant.id
    secret = canaries["user"]
    from apps.tenancy.services import tenant_update_settings

    tenant_update_settings(
        tenant=tenant_a.tenant,
        changes={"note": base64.b64encode(b"xx" + secret.encode()).decode()},
        actor="test",
    )
    assert scan(text_forms(secret), []) == ["tenancy_tenant.settings"]
    with tenant_context(tenant_id):
        user = EndUser.objects.create(tenant_id=tenant_id, pseudonym=b"junk" + secret.encode())
    assert "profiles_enduser.pseudonym" in scan([], binary_forms(secret))
    with tenant_context(tenant_id):
        EndUser.objects.filter(pk=user.pk).delete()
    tenant_update_settings(tenant=tenant_a.tenant, changes={"note": ""}, actor="test")

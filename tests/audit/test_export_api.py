"""Reviewer exports through the real API, verified by the standalone script as a subprocess.

Personas: ``reviewed`` is a tenant whose admins did real work (keys, members, settings) and
whose reviewer holds an ``audit``-scoped key; ``tenant_b`` is another tenant; ``anon`` has no key.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apps.audit.chain import compute_hash, generate_private_key, public_key_to_pem, sign_checkpoint
from apps.audit.models import AuditEvent
from apps.audit.selectors import audit_verifier_script, audit_verifier_script_sha256
from apps.audit.services import audit_checkpoint
from apps.core.tenant_db import tenant_context
from tests.support import TenantPersona, make_tenant, make_user

EXPORT = "/api/v1/audit/export"


@dataclass
class Reviewed:
    persona: TenantPersona
    auditor_key: str

    @property
    def slug(self) -> str:
        return self.persona.slug

    @property
    def auth(self) -> dict[str, str]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.auditor_key}"}


@pytest.fixture
def reviewed(live_db):
    from apps.tenancy.services import api_key_create, api_key_revoke, tenant_update_settings

    # Given a tenant whose people did real, audited work...
    persona = make_tenant("rev", scopes=["ingest", "serve"])
    tenant = persona.tenant
    spare = api_key_create(tenant=tenant, name="spare", scopes=["serve"], actor="user:owner")
    make_user(tenant, "admin")
    audit_checkpoint(tenant_id=tenant.id)  # a periodic checkpoint in the middle of the range
    api_key_revoke(tenant=tenant, key_id=spare.key.id, actor="user:owner")
    tenant_update_settings(tenant=tenant, changes={"retention_days": 30}, actor="user:owner")
    # ...and a reviewer whose key carries only the audit scope.
    auditor = api_key_create(tenant=tenant, name="auditor", scopes=["audit"], actor="user:owner")
    return Reviewed(persona, auditor.raw)


def _export(api, who, **params):
    return api.get(EXPORT, params, **who.auth)


def _run_verifier(tmp_path: Path, bundle: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify_audit_bundle.py"
    script.write_bytes(audit_verifier_script())  # what the web admin serves for download
    path = tmp_path / "bundle.zip"
    path.write_bytes(bundle)
    return subprocess.run(
        [sys.executable, "-I", str(script), str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pinned_key(anon, tmp_path: Path) -> Path:
    response = anon.get("/api/v1/audit/public-key.pem")
    assert response.status_code == 200
    path = tmp_path / "pinned.pem"
    path.write_bytes(response.content)
    return path


def _members(bundle: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(bundle)) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _rebuild(members: dict[str, bytes], **replace: bytes) -> bytes:
    """Re-zip with some files replaced and the manifest's file hashes fixed (a careful attacker)."""
    files = {**members, **{k.replace("__", "."): v for k, v in replace.items()}}
    manifest = json.loads(files["manifest.json"])
    manifest["files"] = {n: hashlib.sha256(files[n]).hexdigest() for n in manifest["files"]}
    files["manifest.json"] = (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _lines(members: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in members["events.jsonl"].splitlines()]


def _jsonl(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for e in events
    )


# --- the end-to-end tamper matrix on a real bundle -------------------------------------------------


@pytest.fixture
def real_bundle(api, reviewed):
    response = _export(api, reviewed, format="zip")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"] == "application/zip"
    assert f"sotto-audit-{reviewed.slug}-" in response["Content-Disposition"]
    assert response["Cache-Control"] == "no-store"
    return response.content


def test_a_real_export_verifies_offline_with_the_pinned_key(anon, reviewed, real_bundle, tmp_path):
    result = _run_verifier(
        tmp_path, real_bundle, "--public-key", str(_pinned_key(anon, tmp_path)), "--tenant", reviewed.slug
    )
    assert result.returncode == 0, result.stdout + result.stderr
    members = _members(real_bundle)
    events = _lines(members)
    assert result.stdout.startswith(
        f"OK: tenant {reviewed.slug}, events {len(events)} (seq 1..{len(events)})"
    )
    assert "export checkpoint signed at" in result.stderr
    actions = [e["action"] for e in events]
    assert actions[:2] == ["tenant.create", "api_key.create"]
    assert {"api_key.revoke", "tenant.settings.update", "membership.create"} <= set(actions)
    kinds = sorted(c["kind"] for c in json.loads(members["checkpoints.json"]))
    assert kinds == ["export", "periodic"]


def test_an_edited_event_fails_offline(anon, reviewed, real_bundle, tmp_path):
    members = _members(real_bundle)
    events = _lines(members)
    events[2]["details"] = {
        "scopes": ["audit", "ingest", "serve", "train"],
        "name": "spare",
    }  # widen a key's scopes
    result = _run_verifier(
        tmp_path,
        _rebuild(members, events__jsonl=_jsonl(events)),
        "--public-key",
        str(_pinned_key(anon, tmp_path)),
    )
    assert result.returncode == 1
    assert result.stdout.strip() == "FAIL at sequence 3: hash mismatch: event content was altered"


def test_a_rehashed_edit_still_fails_against_the_signed_head(anon, reviewed, real_bundle, tmp_path):
    members = _members(real_bundle)
    events = _lines(members)
    events[-1]["actor"] = "user:nobody"  # rewrite the last event and re-seal it consistently
    events[-1]["hash"] = compute_hash(events[-1])
    result = _run_verifier(
        tmp_path,
        _rebuild(members, events__jsonl=_jsonl(events)),
        "--public-key",
        str(_pinned_key(anon, tmp_path)),
    )
    assert result.returncode == 1
    assert result.stdout.startswith(
        f"FAIL at sequence {len(events)}: head hash does not match the signed checkpoint"
    )


def test_a_dropped_last_event_fails_offline(anon, reviewed, real_bundle, tmp_path):
    members = _members(real_bundle)
    events = _lines(members)
    result = _run_verifier(
        tmp_path,
        _rebuild(members, events__jsonl=_jsonl(events[:-1])),
        "--public-key",
        str(_pinned_key(anon, tmp_path)),
    )
    assert result.returncode == 1
    assert "events truncated" in result.stdout


def test_a_bundle_re_signed_with_another_key_fails_against_the_pinned_key(
    anon, reviewed, real_bundle, tmp_path
):
    members = _members(real_bundle)
    events = _lines(members)
    events[0]["actor"] = "user:nobody"
    for i, e in enumerate(events):
        if i:
            e["prev_hash"] = events[i - 1]["hash"]
        e["hash"] = compute_hash(e)
    forger = generate_private_key()
    cps = [
        sign_checkpoint(
            forger,
            reviewed.slug,
            events[-1]["sequence"],
            events[-1]["hash"],
            "2030-01-01T00:00:00.000000Z",
            first_sequence=1,
            first_prev_hash=events[0]["prev_hash"],
        )
    ]
    from apps.audit.bundle import events_to_csv

    forged = _rebuild(
        members,
        events__jsonl=_jsonl(events),
        events__csv=events_to_csv(events),
        checkpoints__json=(json.dumps(cps, sort_keys=True, indent=2) + "\n").encode(),
        public_key__pem=public_key_to_pem(forger.public_key()),
    )
    result = _run_verifier(tmp_path, forged, "--public-key", str(_pinned_key(anon, tmp_path)))
    assert result.returncode == 1
    assert "public key swapped" in result.stdout


# --- the endpoint ----------------------------------------------------------------------------------


def test_each_export_is_itself_audited_and_shows_in_the_next(api, reviewed):
    first = _members(_export(api, reviewed).content)
    second = _members(_export(api, reviewed).content)
    last = _lines(second)[-1]
    assert last["action"] == "audit.export"
    assert last["actor"].startswith("key:")
    assert last["details"]["format"] == "zip"
    assert last["details"]["last_sequence"] == len(_lines(first))
    assert len(_lines(second)) == len(_lines(first)) + 1


def test_since_and_until_select_a_contiguous_signed_range(api, reviewed, anon, tmp_path):
    with tenant_context(reviewed.persona.tenant.id):
        times = list(
            AuditEvent.objects.filter(tenant_id=reviewed.persona.tenant.id)
            .order_by("sequence")
            .values_list("time", flat=True)
        )
    since, until = times[2], times[5]
    response = _export(
        api,
        reviewed,
        since=since.isoformat().replace("+00:00", "Z"),
        until=until.isoformat().replace("+00:00", "Z"),
    )
    assert response.status_code == 200
    events = _lines(_members(response.content))
    assert events and all(since <= _parse(e["time"]) < until for e in events)
    assert events[0]["sequence"] == min(i + 1 for i, t in enumerate(times) if t >= since)
    result = _run_verifier(tmp_path, response.content, "--public-key", str(_pinned_key(anon, tmp_path)))
    assert result.returncode == 0, result.stdout


def test_an_empty_range_still_verifies(api, reviewed, anon, tmp_path):
    response = _export(api, reviewed, until="2001-01-01")
    assert response.status_code == 200
    result = _run_verifier(tmp_path, response.content, "--public-key", str(_pinned_key(anon, tmp_path)))
    assert result.returncode == 0 and "no events" in result.stdout


def _parse(text):
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "yesterday"}, "since: 'yesterday' is not an ISO 8601 date or time"),
        ({"until": "2025-13-01"}, "until: '2025-13-01' is not an ISO 8601 date or time"),
        ({"since": "2025-01-01T00:00:00 02:00"}, "write %2B"),
        ({"since": "2025-02-01", "until": "2025-01-01"}, "since must be earlier than until"),
        ({"format": "xml"}, "format must be zip or csv"),
    ],
)
def test_bad_parameters_get_400_with_a_message(api, reviewed, params, message):
    response = _export(api, reviewed, **params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid"
    assert message in body["error"]["message"]


def test_csv_is_a_spreadsheet_view_of_the_same_events(api, reviewed):
    response = _export(api, reviewed, format="csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8-sig")
    assert (
        text.splitlines()[0]
        == "sequence,time,tenant,actor,action,target_type,target_id,details,prev_hash,hash"
    )
    assert ",tenant.create," in text


def test_the_export_needs_the_audit_scope(api, anon, reviewed):
    assert anon.get(EXPORT).status_code == 401
    response = api.get(EXPORT, **reviewed.persona.auth)  # ingest+serve key
    assert response.status_code == 403
    assert "audit" in response.json()["error"]["message"]


def test_a_tenant_exports_only_its_own_chain(api, reviewed, tenant_b):
    response = api.get(EXPORT, **tenant_b.auth)
    assert response.status_code == 200
    events = _lines(_members(response.content))
    assert {e["tenant"] for e in events} == {tenant_b.slug}
    assert reviewed.slug.encode() not in response.content


def test_a_broken_chain_is_not_exported(api, reviewed, superuser_conn):
    from tests.audit.conftest import tamper_as_superuser

    tamper_as_superuser(
        superuser_conn,
        "UPDATE audit_auditevent SET actor = 'x' WHERE tenant_id = %s AND sequence = 2",
        [reviewed.persona.tenant.id],
    )
    response = _export(api, reviewed)
    assert response.status_code == 409
    assert response.json()["error"] == {
        "code": "audit_chain_broken",
        "message": "audit chain broken at sequence 2: hash mismatch: event content was altered",
        "details": {"sequence": 2},
    }


def test_the_public_key_is_served_without_credentials(anon, live_db):
    body = anon.get("/api/v1/audit/public-key").json()
    assert body["algorithm"] == "ed25519"
    assert body["key_id"] == body["fingerprint"][:16]
    assert body["public_key_pem"].startswith("-----BEGIN PUBLIC KEY-----")
    assert anon.get("/api/v1/audit/public-key.pem").content.decode() == body["public_key_pem"]


def test_the_verifier_download_is_the_shipped_script(live_db):
    shipped = Path(__file__).resolve().parents[2] / "apps" / "audit" / "verify_audit_bundle.py"
    assert audit_verifier_script() == shipped.read_bytes()
    assert audit_verifier_script_sha256() == hashlib.sha256(shipped.read_bytes()).hexdigest()

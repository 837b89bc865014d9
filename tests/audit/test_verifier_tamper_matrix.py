"""Tamper matrix for the standalone bundle verifier, run as a real subprocess like a reviewer would.

Each case plays an attacker who can rewrite the bundle (and usually fixes the manifest so that
cheap checks pass) but does not hold the server's signing key, except where stated. Each case
must fail with the right message; clean bundles must pass with no false alarm.
"""

from __future__ import annotations

import ast
import base64
import copy
import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.audit import bundle, chain

SCRIPT = Path(__file__).resolve().parents[2] / "apps" / "audit" / "verify_audit_bundle.py"
T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
EXPORTED_AT = "2025-03-02T00:00:00.000000Z"
N = 12
PERIODIC = (4, 8)


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_audit_bundle_standalone", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verifier = _load_script()


# ---------------------------------------------------------------------------- fixtures


def make_chain(tenant: str | None, n: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    prev = chain.genesis_hash(tenant)
    for i in range(1, n + 1):
        ev = chain.make_event(
            tenant=tenant,
            sequence=i,
            time=T0 + timedelta(minutes=i, microseconds=i),
            actor=f"user:{tenant or 'ops'}-admin" if i % 3 else "system",
            action=["item.update", "key.rotate", "export.create"][i % 3],
            target_type="item",
            target_id=f"it_{i:04x}",
            details={"i": i, "note": "café ☕" if i == 5 else "", "fields": ["title", "price"]},
            prev_hash=prev,
        )
        events.append(ev)
        prev = ev["hash"]
    return events


@dataclass
class World:
    """A signing key, one tenant chain with periodic checkpoints, and bundle helpers."""

    tenant: str | None
    key: Ed25519PrivateKey = field(
        default_factory=lambda: Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    )
    events: list[dict[str, Any]] = field(default_factory=list)
    periodic: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.events = make_chain(self.tenant, N)
        self.periodic = [
            chain.sign_checkpoint(
                self.key,
                self.tenant,
                s,
                self.events[s - 1]["hash"],
                chain.format_time(T0 + timedelta(hours=s)),
            )
            for s in PERIODIC
        ]

    @property
    def pem(self) -> bytes:
        return chain.public_key_to_pem(self.key.public_key())

    def bundle(self, first: int = 1, last: int = N) -> bytes:
        events = self.events[first - 1 : last]
        anchor = (
            None
            if events
            else (last, self.events[last - 1]["hash"] if last else chain.genesis_hash(self.tenant))
        )
        export = bundle.make_export_checkpoint(
            self.key, self.tenant, events, signed_at=EXPORTED_AT, anchor=anchor
        )
        return bundle.build_bundle(
            self.tenant,
            events,
            [*self.periodic, export],
            self.pem,
            "2025-03-01T00:00:00.000000Z",
            EXPORTED_AT,
            created_at=EXPORTED_AT,
        )


ACME = World("acme")
BETA = World("beta")
ATTACKER = Ed25519PrivateKey.from_private_bytes(bytes(range(100, 132)))


def unpack(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(BytesIO(data)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def read_events(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["events.jsonl"].splitlines()]


def write_events(files: dict[str, bytes], events: list[dict[str, Any]]) -> None:
    files["events.jsonl"] = b"".join(
        json.dumps(e, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        for e in events
    )


def read_cps(files: dict[str, bytes]) -> list[dict[str, Any]]:
    cps: list[dict[str, Any]] = json.loads(files["checkpoints.json"])
    return cps


def write_cps(files: dict[str, bytes], cps: list[dict[str, Any]]) -> None:
    files["checkpoints.json"] = json.dumps(cps, indent=2).encode()


def repack(files: dict[str, bytes], *, fix: bool = True, counts: bool = True) -> bytes:
    """Re-zip; with ``fix`` the attacker also makes the manifest's file hashes (and, with ``counts``,
    its counts and the CSV view) consistent with the edited files."""
    files = dict(files)
    if fix:
        manifest = json.loads(files["manifest.json"])
        if counts:
            events = read_events(files)
            if events:
                files["events.csv"] = bundle.events_to_csv(events)
            manifest.update(
                event_count=len(events),
                checkpoint_count=len(read_cps(files)),
                first_sequence=events[0]["sequence"] if events else None,
                last_sequence=events[-1]["sequence"] if events else None,
                first_prev_hash=events[0]["prev_hash"] if events else None,
            )
        manifest["files"] = {n: hashlib.sha256(files[n]).hexdigest() for n in bundle.HASHED_FILES}
        files["manifest.json"] = json.dumps(manifest, indent=2).encode()
    return bundle.write_zip(files, EXPORTED_AT)


def relink(events: list[dict[str, Any]], start: int = 0, renumber: bool = False) -> list[dict[str, Any]]:
    """Attacker recomputes links and hashes from ``events[start]`` on (optionally renumbering)."""
    events = copy.deepcopy(events)
    for i in range(start, len(events)):
        if renumber:
            events[i]["sequence"] = i + 1
        if i:
            events[i]["prev_hash"] = events[i - 1]["hash"]
        events[i]["hash"] = chain.compute_hash(events[i])
    return events


def forged(after: dict[str, Any], sequence: int) -> dict[str, Any]:
    body = {k: v for k, v in after.items() if k != "hash"}
    return chain.make_event(
        **{
            **body,
            "sequence": sequence,
            "prev_hash": after["hash"],
            "actor": "user:mallory",
            "action": "grant.admin",
        }
    )


def resign(files: dict[str, bytes], key: Ed25519PrivateKey) -> None:
    """Attacker swaps in their own key and re-signs every checkpoint with it."""
    files["public_key.pem"] = chain.public_key_to_pem(key.public_key())
    new = []
    for cp in read_cps(files):
        extra = {k: cp[k] for k in ("first_sequence", "first_prev_hash") if k in cp}
        new.append(
            chain.sign_checkpoint(
                key, cp["tenant"], cp["sequence"], cp["head_hash"], cp["signed_at"], **extra
            )
        )
    write_cps(files, new)
    manifest = json.loads(files["manifest.json"])
    manifest["key_id"] = chain.key_id(key.public_key())
    files["manifest.json"] = json.dumps(manifest).encode()


def flip_signature_bit(cp: dict[str, Any], bit: int) -> None:
    raw = bytearray(base64.b64decode(cp["signature"]))
    raw[bit // 8] ^= 1 << (bit % 8)
    cp["signature"] = base64.b64encode(bytes(raw)).decode()


def cp_at(cps: list[dict[str, Any]], seq: int) -> dict[str, Any]:
    return next(c for c in cps if c["sequence"] == seq)


def run_cli(tmp_path: Path, data: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the verifier as a reviewer would: isolated interpreter, no access to the Sotto code."""
    path = tmp_path / "bundle.zip"
    path.write_bytes(data)
    return subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(path), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def in_process(data: bytes, **kwargs: Any) -> str:
    """Same verdict line as the CLI, without a subprocess (for property tests)."""
    try:
        verifier.verify_bundle(data, **kwargs)
    except verifier.VerificationError as exc:
        return ("FAIL" if exc.sequence is None else f"FAIL at sequence {exc.sequence}") + f": {exc.reason}"
    return "OK"


# ---------------------------------------------------------------------------- the matrix


@dataclass
class Case:
    data: bytes
    expected: str  # the start of the stdout line
    args: tuple[str, ...] = ()


def _edit(files: dict[str, bytes], seq: int, **changes: Any) -> list[dict[str, Any]]:
    events = read_events(files)
    events[seq - 1].update(changes)
    return events


def case_edit_field_naive() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, _edit(files, 5, actor="user:mallory"))
    return Case(repack(files, fix=False), "FAIL: manifest hash mismatch for events.jsonl")


def case_edit_field() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, _edit(files, 5, actor="user:mallory"))
    return Case(repack(files), "FAIL at sequence 5: hash mismatch: event content was altered")


def case_edit_details() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, _edit(files, 5, details={"i": 5, "note": "cafe", "fields": ["title", "price"]}))
    return Case(repack(files), "FAIL at sequence 5: hash mismatch")


def case_edit_field_rehashed() -> Case:
    files = unpack(ACME.bundle())
    events = _edit(files, 5, actor="user:mallory")
    events[4]["hash"] = chain.compute_hash(events[4])
    write_events(files, events)
    return Case(repack(files), "FAIL at sequence 6: prev_hash does not link to the previous event")


def case_edit_field_relinked() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, relink(_edit(files, 5, actor="user:mallory"), start=4))
    return Case(repack(files), "FAIL at sequence 8: head hash does not match the signed checkpoint")


def case_edit_time() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, relink(_edit(files, 10, time="2025-03-01T12:10:00.000000Z"), start=9))
    return Case(repack(files), "FAIL at sequence 12: head hash does not match the signed checkpoint")


def case_delete_event() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    del events[5]
    write_events(files, events)
    return Case(repack(files), "FAIL at sequence 6: sequence gap or reorder: expected 6, found 7")


def case_delete_renumbered_relinked() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    del events[5]
    write_events(files, relink(events, start=5, renumber=True))
    return Case(repack(files), "FAIL at sequence 8: head hash does not match the signed checkpoint")


def case_reorder() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events[5], events[6] = events[6], events[5]
    write_events(files, events)
    return Case(repack(files), "FAIL at sequence 6: sequence gap or reorder: expected 6, found 7")


def case_reorder_renumbered_relinked() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events[5], events[6] = events[6], events[5]
    write_events(files, relink(events, start=5, renumber=True))
    return Case(repack(files), "FAIL at sequence 8: head hash does not match the signed checkpoint")


def case_insert_forged_duplicate_sequence() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events.insert(5, forged(events[4], 6))
    write_events(files, events)
    return Case(repack(files), "FAIL at sequence 7: sequence gap or reorder: expected 7, found 6")


def case_insert_forged_relinked() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events.insert(5, forged(events[4], 6))
    write_events(files, relink(events, start=6, renumber=True))
    return Case(repack(files), "FAIL at sequence 8: head hash does not match the signed checkpoint")


def case_insert_forged_last_segment() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events.insert(9, forged(events[8], 10))
    write_events(files, relink(events, start=10, renumber=True)[:N])  # keep the count: drop the real last
    return Case(repack(files), "FAIL at sequence 12: head hash does not match the signed checkpoint")


def case_append_forged() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events.append(forged(events[-1], N + 1))
    write_events(files, events)
    return Case(repack(files), f"FAIL at sequence {N + 1}: event after the export checkpoint")


def case_truncate_tail() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, read_events(files)[:9])
    return Case(
        repack(files),
        "FAIL at sequence 10: chain ends at sequence 9 but the export checkpoint covers up to 12 (events truncated)",
    )


def case_truncate_tail_naive() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, read_events(files)[:9])
    return Case(repack(files, fix=False), "FAIL: manifest hash mismatch for events.jsonl")


def case_truncate_tail_and_export_checkpoint() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, read_events(files)[:8])
    write_cps(files, [c for c in read_cps(files) if c["kind"] != "export"])
    return Case(repack(files), "FAIL: expected exactly one export checkpoint, found 0")


def case_truncate_relabel_periodic_as_export() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, read_events(files)[:8])
    cps = [c for c in read_cps(files) if c["kind"] != "export"]
    cp_at(cps, 8).update(kind="export", first_sequence=1, first_prev_hash=chain.genesis_hash("acme"))
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 8: invalid checkpoint signature")


def case_truncate_head() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, read_events(files)[3:])
    return Case(repack(files), "FAIL at sequence 1: sequence gap or reorder: expected 1, found 4")


def case_truncate_head_of_range_export() -> Case:
    files = unpack(ACME.bundle(first=6))
    write_events(files, read_events(files)[1:])
    return Case(repack(files), "FAIL at sequence 6: sequence gap or reorder: expected 6, found 7")


def case_truncate_everything() -> Case:
    files = unpack(ACME.bundle())
    write_events(files, [])
    return Case(
        repack(files),
        "FAIL at sequence 1: chain ends at sequence 0 but the export checkpoint covers up to 12",
    )


def case_manifest_count_lies() -> Case:
    files = unpack(ACME.bundle())
    manifest = json.loads(files["manifest.json"])
    manifest["event_count"] = N - 1
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(repack(files, fix=False), f"FAIL: manifest event_count is {N - 1} but the bundle has {N}")


def case_bitflip_export_signature() -> Case:
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    flip_signature_bit(cp_at(cps, N), 100)
    write_cps(files, cps)
    return Case(repack(files), f"FAIL at sequence {N}: invalid checkpoint signature")


def case_bitflip_periodic_signature_high_bit() -> Case:
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    flip_signature_bit(cp_at(cps, 4), 511)
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 4: invalid checkpoint signature")


def case_bitflip_signature_text() -> Case:
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    sig = cp_at(cps, 8)["signature"]
    cp_at(cps, 8)["signature"] = sig[:10] + chr(ord(sig[10]) ^ 0x01) + sig[11:]
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 8: invalid checkpoint signature")


def case_bitflip_signature_unused_bits() -> Case:
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    sig = cp_at(cps, 8)["signature"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    cp_at(cps, 8)["signature"] = sig[:-3] + alphabet[alphabet.index(sig[-3]) ^ 1] + "=="
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 8: invalid checkpoint signature")


def case_bitflip_head_hash() -> Case:
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    h = cp_at(cps, 4)["head_hash"]
    cp_at(cps, 4)["head_hash"] = ("1" if h[0] == "0" else "0") + h[1:]
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 4: invalid checkpoint signature")


def case_swap_key_naive() -> Case:
    files = unpack(ACME.bundle())
    files["public_key.pem"] = chain.public_key_to_pem(ATTACKER.public_key())
    return Case(repack(files, fix=False), "FAIL: manifest hash mismatch for public_key.pem")


def case_swap_key_fixed_hashes() -> Case:
    files = unpack(ACME.bundle())
    files["public_key.pem"] = chain.public_key_to_pem(ATTACKER.public_key())
    return Case(repack(files), "FAIL: manifest key_id does not match public_key.pem (public key swapped?)")


def case_swap_key_fixed_manifest() -> Case:
    files = unpack(ACME.bundle())
    files["public_key.pem"] = chain.public_key_to_pem(ATTACKER.public_key())
    manifest = json.loads(files["manifest.json"])
    manifest["key_id"] = chain.key_id(ATTACKER.public_key())
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(
        repack(files), "FAIL at sequence 4: checkpoint key id '56475aa75463474c' is not the bundle key"
    )


def case_swap_key_relabel_key_ids() -> Case:
    files = unpack(ACME.bundle())
    files["public_key.pem"] = chain.public_key_to_pem(ATTACKER.public_key())
    kid = chain.key_id(ATTACKER.public_key())
    cps = [{**c, "key_id": kid} for c in read_cps(files)]
    write_cps(files, cps)
    manifest = json.loads(files["manifest.json"])
    manifest["key_id"] = kid
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(repack(files), "FAIL at sequence 4: invalid checkpoint signature")


def _resigned_rewrite() -> bytes:
    """Full forgery with an attacker key: edit, relink, re-sign. Only key pinning catches it."""
    files = unpack(ACME.bundle())
    events = relink(_edit(files, 5, actor="user:mallory"), start=4)
    write_events(files, events)
    cps = read_cps(files)
    for cp in cps:
        cp["head_hash"] = events[cp["sequence"] - 1]["hash"]
    write_cps(files, cps)
    resign(files, ATTACKER)
    return repack(files)


REAL_FP = chain.key_fingerprint(ACME.key.public_key())
ATTACKER_FP = chain.key_fingerprint(ATTACKER.public_key())


def case_swap_key_resigned_pinned_pem() -> Case:
    return Case(
        _resigned_rewrite(),
        f"FAIL: bundle public key (fingerprint {ATTACKER_FP}) is not the pinned key (fingerprint {REAL_FP})",
        ("--public-key", "REAL_PEM"),
    )


def case_swap_key_resigned_pinned_key_id() -> Case:
    return Case(
        _resigned_rewrite(),
        f"FAIL: bundle public key (fingerprint {ATTACKER_FP}) does not match pinned key id {REAL_FP[:16]}",
        ("--key-id", REAL_FP[:16]),
    )


def case_swap_key_resigned_pinned_fingerprint() -> Case:
    return Case(_resigned_rewrite(), "FAIL: bundle public key", ("--key-id", REAL_FP.upper()))


def case_replay_other_tenant_events() -> Case:
    files = unpack(ACME.bundle())
    files["events.jsonl"] = unpack(BETA.bundle())["events.jsonl"]
    return Case(repack(files), "FAIL at sequence 1: event belongs to tenant 'beta', not 'acme'")


def case_replay_relabelled() -> Case:
    files = unpack(ACME.bundle())
    beta = [{**e, "tenant": "acme"} for e in read_events(unpack(BETA.bundle()))]
    beta[0]["prev_hash"] = chain.genesis_hash("acme")
    write_events(files, beta)
    return Case(repack(files), "FAIL at sequence 1: hash mismatch")


def case_replay_relabelled_rehashed() -> Case:
    files = unpack(ACME.bundle())
    beta = [{**e, "tenant": "acme"} for e in read_events(unpack(BETA.bundle()))]
    for e in beta:
        e["hash"] = chain.compute_hash(e)
    write_events(files, beta)
    return Case(repack(files), "FAIL at sequence 1: prev_hash does not link")


def case_replay_relabelled_relinked() -> Case:
    files = unpack(ACME.bundle())
    beta = [{**e, "tenant": "acme"} for e in read_events(unpack(BETA.bundle()))]
    beta[0]["prev_hash"] = chain.genesis_hash("acme")
    write_events(files, relink(beta))
    return Case(repack(files), "FAIL at sequence 4: head hash does not match the signed checkpoint")


def case_replay_whole_bundle_relabelled() -> Case:
    files = unpack(BETA.bundle())
    manifest = json.loads(files["manifest.json"])
    manifest["tenant"] = "acme"
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(repack(files), "FAIL at sequence 4: checkpoint is for tenant 'beta', not 'acme' (replayed?)")


def case_replay_with_relabelled_checkpoints() -> Case:
    files = unpack(BETA.bundle())
    manifest = json.loads(files["manifest.json"])
    manifest["tenant"] = "acme"
    files["manifest.json"] = json.dumps(manifest).encode()
    write_cps(files, [{**c, "tenant": "acme"} for c in read_cps(files)])
    return Case(repack(files), "FAIL at sequence 4: invalid checkpoint signature")


def case_genuine_other_tenant_bundle_pinned() -> Case:
    return Case(BETA.bundle(), "FAIL: bundle is for tenant 'beta', expected 'acme'", ("--tenant", "acme"))


def case_platform_bundle_pinned_to_tenant() -> Case:
    return Case(
        World(None).bundle(), "FAIL: bundle is for tenant None, expected 'acme'", ("--tenant", "acme")
    )


def case_csv_altered() -> Case:
    files = unpack(ACME.bundle())
    files["events.csv"] = files["events.csv"].replace(b"user:acme-admin", b"user:acme-admix", 1)
    manifest = json.loads(files["manifest.json"])
    manifest["files"]["events.csv"] = hashlib.sha256(files["events.csv"]).hexdigest()
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(repack(files, fix=False), "FAIL: events.csv does not match events.jsonl")


def case_non_canonical_line() -> Case:
    files = unpack(ACME.bundle())
    lines = files["events.jsonl"].split(b"\n")
    lines[2] = lines[2].replace(b'"actor":', b'"actor": ', 1)
    files["events.jsonl"] = b"\n".join(lines)
    return Case(repack(files), "FAIL at sequence 3: events.jsonl line 3 is not canonically encoded")


def case_duplicate_json_key() -> Case:
    files = unpack(ACME.bundle())
    lines = files["events.jsonl"].split(b"\n")
    lines[2] = lines[2][:-1] + b',"actor":"user:mallory"}'
    files["events.jsonl"] = b"\n".join(lines)
    return Case(
        repack(files), "FAIL at sequence 3: events.jsonl line 3 is not valid JSON (duplicate key 'actor')"
    )


def case_extra_field() -> Case:
    files = unpack(ACME.bundle())
    events = read_events(files)
    events[2]["user_id"] = 42
    write_events(files, events)
    return Case(repack(files), "FAIL at sequence 3: malformed event on line 3: event fields wrong")


def case_missing_trailing_newline() -> Case:
    files = unpack(ACME.bundle())
    files["events.jsonl"] = files["events.jsonl"][:-1]
    return Case(repack(files), "FAIL: events.jsonl does not end with a newline (truncated?)")


def case_extra_file() -> Case:
    files = unpack(ACME.bundle())
    files["README.txt"] = b"trust me"
    return Case(repack(files, fix=False), "FAIL: bundle files wrong (missing [], unexpected ['README.txt'])")


def case_duplicate_member() -> Case:
    data = ACME.bundle()
    buf = BytesIO(data)
    with pytest.warns(UserWarning), zipfile.ZipFile(buf, "a") as zf:
        zf.writestr("events.jsonl", b"")
    return Case(buf.getvalue(), "FAIL: bundle contains duplicate file names")


def case_missing_member() -> Case:
    files = unpack(ACME.bundle())
    del files["events.csv"]
    return Case(
        bundle.write_zip(files, EXPORTED_AT),
        "FAIL: bundle files wrong (missing ['events.csv'], unexpected [])",
    )


def case_forked_checkpoint() -> Case:
    """The server itself signed two different heads at one sequence: a rewrite, never legitimate."""
    files = unpack(ACME.bundle())
    cps = read_cps(files)
    cps.append(chain.sign_checkpoint(ACME.key, "acme", 10, "ab" * 32, "2025-03-01T23:00:00.000000Z"))
    cps.append(chain.sign_checkpoint(ACME.key, "acme", 10, "cd" * 32, "2025-03-01T23:30:00.000000Z"))
    write_cps(files, cps)
    return Case(repack(files), "FAIL at sequence 10: two signed checkpoints disagree on the head hash")


def case_hostile_strings_escaped() -> Case:
    files = unpack(ACME.bundle())
    manifest = json.loads(files["manifest.json"])
    manifest["tenant"] = "\x1b[2J\x1b[31mowned\u202e"
    files["manifest.json"] = json.dumps(manifest).encode()
    return Case(
        repack(files),
        "FAIL at sequence 4: checkpoint is for tenant 'acme', not '\\x1b[2J\\x1b[31mowned\\u202e'",
    )


def case_not_a_zip() -> Case:
    return Case(
        b"PK\x03\x04 definitely not a zip", "FAIL: not a readable zip archive (truncated or corrupt bundle)"
    )


CASES: dict[str, Callable[[], Case]] = {
    name.removeprefix("case_"): fn for name, fn in dict(globals()).items() if name.startswith("case_")
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tamper_case_detected(name: str, tmp_path: Path) -> None:
    case = CASES[name]()
    args = tuple(str(_real_pem(tmp_path)) if a == "REAL_PEM" else a for a in case.args)
    proc = run_cli(tmp_path, case.data, *args)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stdout.startswith(case.expected), proc.stdout
    assert proc.stdout.count("\n") == 1
    assert proc.stdout.isascii()
    assert all(ch.isprintable() for ch in proc.stdout.rstrip("\n"))
    assert "Traceback" not in proc.stderr
    assert in_process(case.data, **_kwargs(case.args)).startswith(case.expected)


def _real_pem(tmp_path: Path) -> Path:
    path = tmp_path / "real_public_key.pem"
    path.write_bytes(ACME.pem)
    return path


def _kwargs(args: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag == "--public-key":
            out["public_key_pem"] = ACME.pem
        elif flag == "--key-id":
            out["key_id"] = value
        elif flag == "--tenant":
            out["tenant"] = value
    return out


# ---------------------------------------------------------------------------- no false alarms


def _ok_line(tenant: str, events: int, seq: str, checkpoints: int, fp: str = REAL_FP) -> str:
    return f"OK: tenant {tenant}, events {events} ({seq}), checkpoints {checkpoints} verified, key fingerprint {fp}\n"


@pytest.mark.parametrize(
    "args",
    [
        (),
        ("--public-key", "REAL_PEM"),
        ("--key-id", REAL_FP[:16]),
        ("--key-id", REAL_FP),
        ("--tenant", "acme"),
    ],
)
def test_clean_bundle_verifies(args: tuple[str, ...], tmp_path: Path) -> None:
    args = tuple(str(_real_pem(tmp_path)) if a == "REAL_PEM" else a for a in args)
    proc = run_cli(tmp_path, ACME.bundle(), *args)
    assert (proc.returncode, proc.stdout) == (0, _ok_line("acme", N, f"seq 1..{N}", 3)), proc.stderr
    pinned = any(a in ("--public-key", "--key-id") for a in args)
    assert ("WARNING" in proc.stderr) is not pinned


def test_range_export_verifies(tmp_path: Path) -> None:
    """A since/until export starts mid-chain; checkpoints outside the range are still signature-checked."""
    proc = run_cli(tmp_path, ACME.bundle(first=5, last=10), "--key-id", REAL_FP[:16])
    assert (proc.returncode, proc.stdout) == (0, _ok_line("acme", 6, "seq 5..10", 3)), proc.stdout


def test_range_export_anchored_on_periodic_checkpoint(tmp_path: Path) -> None:
    assert run_cli(tmp_path, ACME.bundle(first=5, last=8)).returncode == 0
    assert run_cli(tmp_path, ACME.bundle(first=9)).returncode == 0


def test_empty_and_platform_bundles_verify(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, ACME.bundle(first=N + 1, last=N))
    assert (proc.returncode, proc.stdout) == (0, _ok_line("acme", 0, "no events", 3)), proc.stdout
    platform = World(None)
    proc = run_cli(tmp_path, platform.bundle(), "--platform")
    assert (proc.returncode, proc.stdout) == (0, _ok_line("<platform>", N, f"seq 1..{N}", 3)), proc.stdout
    fresh = World("fresh")
    fresh.periodic = []
    proc = run_cli(tmp_path, fresh.bundle(first=1, last=0))
    assert (proc.returncode, proc.stdout) == (0, _ok_line("fresh", 0, "no events", 1)), proc.stdout


def test_resigned_forgery_passes_only_without_pinning(tmp_path: Path) -> None:
    """Why --public-key/--key-id exist: an attacker with their own key can make a self-consistent bundle."""
    proc = run_cli(tmp_path, _resigned_rewrite())
    assert proc.returncode == 0
    assert ATTACKER_FP in proc.stdout
    assert REAL_FP not in proc.stdout
    assert "WARNING: no --public-key/--key-id given" in proc.stderr


def test_empty_export_with_events_smuggled_in(tmp_path: Path) -> None:
    files = unpack(ACME.bundle(first=N + 1, last=N))
    write_events(files, [forged(ACME.events[-1], N + 1)])
    proc = run_cli(tmp_path, repack(files))
    assert proc.stdout.startswith(f"FAIL at sequence {N + 1}: event after the export checkpoint")


@pytest.mark.parametrize("cut", [0, 1, 30, 0.25, 0.5, 0.75, -22, -1])
def test_truncated_zip_bytes_fail_cleanly(cut: float, tmp_path: Path) -> None:
    data = ACME.bundle()
    end = int(len(data) * cut) if isinstance(cut, float) else (cut if cut >= 0 else len(data) + cut)
    proc = run_cli(tmp_path, data[:end])
    assert proc.returncode == 1
    assert proc.stdout.startswith("FAIL: "), proc.stdout
    assert "Traceback" not in proc.stdout + proc.stderr


def test_cli_usage_errors(tmp_path: Path) -> None:
    proc = run_cli(tmp_path, ACME.bundle(), "--key-id", "xyz")
    assert proc.returncode == 2
    proc = run_cli(tmp_path, ACME.bundle(), "--public-key", str(tmp_path / "missing.pem"))
    assert proc.returncode == 2
    missing = subprocess.run(
        [sys.executable, "-I", str(SCRIPT), str(tmp_path / "nope.zip")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (missing.returncode, missing.stdout.split(":")[0]) == (1, "FAIL")


# ---------------------------------------------------------------------------- property: byte mutations


CLEAN = ACME.bundle()
CLEAN_FILES = unpack(CLEAN)
JSONL = CLEAN_FILES["events.jsonl"]


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(min_value=0, max_value=len(JSONL) - 1), delta=st.integers(min_value=1, max_value=255))
def test_property_any_single_byte_mutation_of_events_is_detected(pos: int, delta: int) -> None:
    """Even when the attacker also fixes the manifest (hashes, counts) and the CSV view."""
    mutated = bytearray(JSONL)
    mutated[pos] = (mutated[pos] + delta) % 256
    files = dict(CLEAN_FILES, **{"events.jsonl": bytes(mutated)})
    try:
        data = repack(files)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        data = repack(files, counts=False)  # too broken to parse: the attacker can still fix file hashes
    assert in_process(data).startswith("FAIL")
    assert in_process(repack(files, fix=False)).startswith("FAIL: manifest hash mismatch for events.jsonl")


def test_clean_bundle_in_process() -> None:
    assert in_process(CLEAN) == "OK"


# ---------------------------------------------------------------------------- standalone & drift


def test_script_imports_only_stdlib_and_cryptography() -> None:
    tree = ast.parse(SCRIPT.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports"
            roots.add((node.module or "").split(".")[0])
    assert roots - set(sys.stdlib_module_names) == {"cryptography"}


def test_script_parses_as_older_python() -> None:
    """Reviewers may run it with an older interpreter than the server's."""
    ast.parse(SCRIPT.read_text(encoding="utf-8"), feature_version=(3, 8))


def test_empty_key_id_pin_is_refused() -> None:
    with pytest.raises(ValueError):
        verifier.verify_bundle(CLEAN, key_id="")


def test_script_runs_alone_outside_the_repo(tmp_path: Path) -> None:
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(SCRIPT, alone / "verify.py")
    (alone / "b.zip").write_bytes(ACME.bundle())
    proc = subprocess.run(
        [sys.executable, "-I", "verify.py", "b.zip", "--key-id", REAL_FP[:16]],
        cwd=alone,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode, proc.stdout) == (0, _ok_line("acme", N, f"seq 1..{N}", 3)), proc.stderr


def test_constants_do_not_drift() -> None:
    assert verifier.EVENT_DOMAIN == chain.EVENT_DOMAIN
    assert verifier.GENESIS_DOMAIN == chain.GENESIS_DOMAIN
    assert verifier.CHECKPOINT_DOMAIN == chain.CHECKPOINT_DOMAIN
    assert verifier.EVENT_FIELDS == chain.EVENT_FIELDS
    assert verifier.MAX_SAFE_INT == chain.MAX_SAFE_INT
    assert verifier.TIME_PATTERN.pattern == chain.TIME_PATTERN.pattern
    assert verifier.CSV_COLUMNS == bundle.CSV_COLUMNS
    assert verifier.HASHED_FILES == bundle.HASHED_FILES
    assert (verifier.BUNDLE_FORMAT, verifier.BUNDLE_FORMAT_VERSION) == (
        bundle.BUNDLE_FORMAT,
        bundle.BUNDLE_FORMAT_VERSION,
    )
    for tenant in (None, "acme", "b", "ténant"):
        assert verifier.genesis_hash(tenant) == chain.genesis_hash(tenant)


def test_encodings_do_not_drift_on_fixtures() -> None:
    for world in (ACME, BETA, World(None)):
        for ev in world.events:
            assert verifier.canonical_bytes(ev) == chain.canonical_bytes(ev)
            assert verifier.compute_hash(ev) == chain.compute_hash(ev) == ev["hash"]
            assert verifier.encode_event_line(ev) == chain.encode_event_line(ev)
        assert verifier.events_to_csv(world.events) == bundle.events_to_csv(world.events)
        for cp in world.periodic:
            assert verifier.checkpoint_payload_of(cp) == chain.checkpoint_payload_of(cp)
        export = bundle.make_export_checkpoint(
            world.key, world.tenant, world.events[3:], signed_at=EXPORTED_AT
        )
        assert verifier.checkpoint_payload_of(export) == chain.checkpoint_payload_of(export)


_text = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | _text,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_text, kids, max_size=3),
    max_leaves=10,
)


@settings(max_examples=200, deadline=None)
@given(
    tenant=st.none() | st.from_regex(r"[a-z][a-z0-9-]{0,15}", fullmatch=True),
    seq=st.integers(1, 2**53 - 1),
    actor=_text.filter(bool),
    target=_text,
    details=st.dictionaries(_text, _json, max_size=4),
    micros=st.integers(0, 10**15),
)
def test_encodings_do_not_drift_property(
    tenant: str | None, seq: int, actor: str, target: str, details: dict[str, Any], micros: int
) -> None:
    ev = chain.make_event(
        tenant=tenant,
        sequence=seq,
        time=T0 + timedelta(microseconds=micros),
        actor=actor,
        action="=cmd|' /C calc'!A0",
        target_type="item",
        target_id=target,
        details=details,
        prev_hash=chain.genesis_hash(tenant),
    )
    assert verifier.canonical_bytes(ev) == chain.canonical_bytes(ev)
    assert verifier.encode_event_line(ev) == chain.encode_event_line(ev)
    assert verifier.events_to_csv([ev]) == bundle.events_to_csv([ev])
    cp = chain.sign_checkpoint(
        ACME.key, tenant, seq, ev["hash"], ev["time"], first_sequence=seq, first_prev_hash=ev["prev_hash"]
    )
    assert verifier.checkpoint_payload_of(cp) == chain.checkpoint_payload_of(cp)
    bad = {**ev, "details": {"f": 0.5}}
    with pytest.raises(ValueError):
        verifier.canonical_bytes(bad)
    with pytest.raises(ValueError):
        chain.canonical_bytes(bad)

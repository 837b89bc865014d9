"""Offline-verifiable audit export bundle (a zip), built from already-sealed events.

Layout (``verify_audit_bundle.py`` checks every part of it)::

    manifest.json     format/version, tenant, since/until, created_at, counts, first/last
                      sequence, first_prev_hash, key_id, sha256 of every other file
    events.jsonl      one canonical JSON event (with "hash") per line, by sequence, "\\n"-terminated
    events.csv        the same events for spreadsheets (UTF-8 with BOM, CRLF, formula-safe cells);
                      a view only, but the verifier re-renders it and demands byte equality
    checkpoints.json  signed checkpoints, sorted by (sequence, signed_at, kind); exactly one
                      ``kind == "export"``, signed at export time over the exported range
    public_key.pem    the Ed25519 key the checkpoints are signed with

The manifest is not signed: it catches corruption and careless edits. Security rests on the
export checkpoint (both ends of the range) and periodic checkpoints inside the range, verified
against a key the reviewer pins independently (``--public-key`` / ``--key-id``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.audit.chain import format_time, sign_checkpoint, verify_chain, verify_checkpoint

# The layout, the file names and the encoding of every file are the verifier's (one definition).
from apps.audit.verify_audit_bundle import (
    BUNDLE_FORMAT,
    BUNDLE_FORMAT_VERSION,
    CHECKPOINTS,
    CSV_COLUMNS,
    EVENTS_CSV,
    EVENTS_JSONL,
    HASHED_FILES,
    MANIFEST,
    PUBLIC_KEY,
    TIME_PATTERN,
    encode_event_line,
    events_to_csv,
    key_id,
    load_public_key_pem,
)

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_FORMAT_VERSION",
    "CHECKPOINTS",
    "CSV_COLUMNS",
    "EVENTS_CSV",
    "EVENTS_JSONL",
    "HASHED_FILES",
    "MANIFEST",
    "PUBLIC_KEY",
    "build_bundle",
    "events_to_csv",
    "events_to_jsonl",
    "make_export_checkpoint",
    "write_zip",
]


def _time_text(value: str | datetime | None) -> str | None:
    if value is None or isinstance(value, datetime):
        return None if value is None else format_time(value)
    if TIME_PATTERN.fullmatch(value) is None:
        raise ValueError("times must be UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'")
    return value


def _pretty_json(obj: object) -> bytes:
    """Deterministic, human-readable JSON for the manifest and checkpoints."""
    return (json.dumps(obj, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def events_to_jsonl(events: list[dict[str, Any]]) -> bytes:
    """``events.jsonl``: canonical JSON per line, newline-terminated."""
    return b"".join(encode_event_line(e) + b"\n" for e in events)


def _sort_checkpoints(checkpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(checkpoints, key=lambda c: (c["sequence"], c["signed_at"], c["kind"]))


def make_export_checkpoint(
    private_key: Ed25519PrivateKey,
    tenant: str | None,
    events: list[dict[str, Any]],
    *,
    signed_at: str | datetime,
    anchor: tuple[int, str] | None = None,
) -> dict[str, Any]:
    """Sign the exported range (both ends), after re-checking its links so we never vouch for a break.

    ``anchor`` = (sequence, hash) of the last event *before* the range; required only when
    ``events`` is empty ((0, genesis_hash(tenant)) for a chain with no events yet). The caller
    should already have verified the full chain against earlier periodic checkpoints.
    """
    events = sorted(events, key=lambda e: e["sequence"])
    if events:
        first_seq, first_prev = events[0]["sequence"], events[0]["prev_hash"]
        if anchor is not None and anchor != (first_seq - 1, first_prev):
            raise ValueError("anchor does not match the first event")
        result = verify_chain(
            events,
            tenant=tenant,
            start_sequence=first_seq,
            start_prev_hash=first_prev,
        )
        if not result.ok:
            raise ValueError(
                f"refusing to sign a broken chain at sequence {result.bad_sequence}: {result.reason}"
            )
        last_seq, head = events[-1]["sequence"], events[-1]["hash"]
    else:
        if anchor is None:
            raise ValueError("an empty export needs the anchor (sequence, hash) before the range")
        last_seq, head = anchor
        first_seq, first_prev = last_seq + 1, head
    return sign_checkpoint(
        private_key,
        tenant,
        last_seq,
        head,
        signed_at,
        first_sequence=first_seq,
        first_prev_hash=first_prev,
    )


def build_bundle(
    tenant: str | None,
    events: list[dict[str, Any]],
    checkpoints: list[dict[str, Any]],
    public_key_pem: bytes,
    since: str | datetime | None,
    until: str | datetime | None,
    *,
    created_at: str | datetime | None = None,
) -> bytes:
    """Zip the range for offline verification; refuses inputs that could never verify.

    ``checkpoints`` must hold exactly one export checkpoint (see :func:`make_export_checkpoint`)
    covering ``events`` exactly, plus any periodic checkpoints worth shipping; all must be
    signed by ``public_key_pem``. Event hashes are not re-checked here on purpose: a damaged
    chain is still exported so that the verifier can point at the damage.
    """
    public_key = load_public_key_pem(public_key_pem)
    kid = key_id(public_key)
    events = sorted(events, key=lambda e: e["sequence"])
    for e in events:
        if e.get("tenant") != tenant:
            raise ValueError(f"event {e.get('sequence')} belongs to another tenant")
    for c in checkpoints:
        if c.get("tenant") != tenant:
            raise ValueError("checkpoint belongs to another tenant")
        if not verify_checkpoint(public_key, c):
            raise ValueError(f"checkpoint at sequence {c.get('sequence')} is not validly signed by this key")
    exports = [c for c in checkpoints if c["kind"] == "export"]
    if len(exports) != 1:
        raise ValueError("exactly one export checkpoint is required")
    export = exports[0]
    if events:
        covers = (events[0]["sequence"], events[0]["prev_hash"], events[-1]["sequence"], events[-1]["hash"])
    else:
        covers = (export["sequence"] + 1, export["head_hash"], export["sequence"], export["head_hash"])
    if covers != (
        export["first_sequence"],
        export["first_prev_hash"],
        export["sequence"],
        export["head_hash"],
    ):
        raise ValueError("the export checkpoint does not cover exactly these events")

    created = _time_text(created_at) or format_time(datetime.now(UTC))
    files = {
        EVENTS_JSONL: events_to_jsonl(events),
        EVENTS_CSV: events_to_csv(events),
        CHECKPOINTS: _pretty_json(_sort_checkpoints(checkpoints)),
        PUBLIC_KEY: public_key_pem,
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_FORMAT_VERSION,
        "tenant": tenant,
        "since": _time_text(since),
        "until": _time_text(until),
        "created_at": created,
        "event_count": len(events),
        "checkpoint_count": len(checkpoints),
        "first_sequence": events[0]["sequence"] if events else None,
        "last_sequence": events[-1]["sequence"] if events else None,
        "first_prev_hash": events[0]["prev_hash"] if events else None,
        "key_id": kid,
        "hash_algorithm": "sha256",
        "signature_algorithm": "ed25519",
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    return write_zip({MANIFEST: _pretty_json(manifest), **files}, created)


def write_zip(files: dict[str, bytes], created_at: str) -> bytes:
    """Deterministic zip (fixed order, timestamp from ``created_at``), so equal inputs give equal bytes."""
    stamp = (
        max(1980, int(created_at[0:4])),
        int(created_at[5:7]),
        int(created_at[8:10]),
        int(created_at[11:13]),
        int(created_at[14:16]),
        int(created_at[17:19]) // 2 * 2,
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return buf.getvalue()

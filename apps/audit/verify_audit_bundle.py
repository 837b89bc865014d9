#!/usr/bin/env python3
"""Offline verifier for Sotto audit export bundles. Standalone: stdlib + ``cryptography`` only.

Usage::

    python verify_audit_bundle.py bundle.zip [--public-key KEY.pem] [--key-id HEX] [--tenant SLUG | --platform]

Get the key (or its id) yourself from ``/api/v1/audit/public-key`` and pass it: the key inside
the bundle proves nothing on its own, since whoever could rewrite the bundle could re-sign it.
Prints ``OK: tenant T, events N (seq a..b), checkpoints M verified, key fingerprint F`` and exits 0,
or ``FAIL at sequence S: <reason>`` / ``FAIL: <reason>`` and exits 1. Bad arguments exit 2.

This file is the one definition of the audit encoding: ``apps/audit/chain.py`` and
``apps/audit/bundle.py`` import it from here (``chain.py``'s docstring spells the format out in
full). It must still run alone on a reviewer's laptop without the Sotto code, so it imports
nothing but the standard library and ``cryptography``; the tests run it from a copy in an
empty folder:

* event hash = sha256(b"sotto-audit-v1\\x00" + canonical JSON of the event without "hash")
* canonical JSON = json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False), UTF-8
* genesis = sha256(b"sotto-audit-genesis-v1\\x00" + canonical JSON of the tenant (or null))
* checkpoint signature = Ed25519 over b"sotto-audit-checkpoint-v1\\x00" + canonical JSON of
  {kind, tenant, sequence, head_hash, signed_at[, first_sequence, first_prev_hash]}
* key id = first 16 hex chars of sha256(raw public key); fingerprint = all 64
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import re
import sys
import zipfile
from typing import Any, TypeGuard

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
except ImportError:  # pragma: no cover - depends on the reviewer's machine
    sys.stderr.write("ERROR: this verifier needs the 'cryptography' package (pip install cryptography)\n")
    raise SystemExit(2) from None

EVENT_DOMAIN = b"sotto-audit-v1\x00"
GENESIS_DOMAIN = b"sotto-audit-genesis-v1\x00"
CHECKPOINT_DOMAIN = b"sotto-audit-checkpoint-v1\x00"
EVENT_FIELDS = frozenset(
    {"tenant", "sequence", "time", "actor", "action", "target_type", "target_id", "details", "prev_hash"}
)
CHECKPOINT_KINDS = ("periodic", "export")
KEY_ID_HEX_CHARS = 16
BUNDLE_FORMAT = "sotto-audit-bundle"
BUNDLE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"
EVENTS_JSONL = "events.jsonl"
EVENTS_CSV = "events.csv"
CHECKPOINTS = "checkpoints.json"
PUBLIC_KEY = "public_key.pem"
HASHED_FILES = (EVENTS_JSONL, EVENTS_CSV, CHECKPOINTS, PUBLIC_KEY)
CSV_COLUMNS = (
    "sequence",
    "time",
    "tenant",
    "actor",
    "action",
    "target_type",
    "target_id",
    "details",
    "prev_hash",
    "hash",
)
MAX_SAFE_INT = 2**53 - 1
MAX_MEMBER_BYTES = 2 * 1024**3  # refuse zip bombs before inflating them
_HEX64 = re.compile(r"[0-9a-f]{64}")
TIME_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)  # ASCII digits only
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_MAX_DEPTH = 32


class VerificationError(Exception):
    """A verification failure; ``sequence`` is set when it can be pinned to one event."""

    def __init__(self, reason: str, sequence: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.sequence = sequence


# ---------------------------------------------------------------------------- encoding (chain.py imports it)


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


def _is_int(value: object, low: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= MAX_SAFE_INT


def _check_json_value(value: object, path: str, depth: int = 0) -> None:
    """Reject anything whose JSON text is not stable (floats, huge ints, odd keys)."""
    if depth > _MAX_DEPTH:
        raise ValueError(f"{path}: nested too deeply")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INT:
            raise ValueError(f"{path}: integer outside +/-(2**53-1)")
        return
    if isinstance(value, float):
        raise ValueError(f"{path}: floats are not allowed in audit details (use a string)")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json_value(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{path}: object keys must be strings")
            _check_json_value(item, f"{path}.{key}", depth + 1)
        return
    raise ValueError(f"{path}: unsupported type {type(value).__name__}")


def validate_tenant(tenant: object) -> None:
    """A tenant slug (non-empty string) or ``None`` for the platform chain; ValueError otherwise."""
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ValueError("tenant must be a non-empty string or None")


def json_bytes(obj: object) -> bytes:
    """Canonical JSON as UTF-8 (lone surrogates -> ValueError)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from exc


def event_body(event: dict[str, Any]) -> dict[str, Any]:
    """Validate an event and return the hashed fields (all but ``hash``)."""
    if not isinstance(event, dict):
        raise ValueError("event must be a JSON object")
    keys = set(event) - {"hash"}
    if keys != EVENT_FIELDS:
        missing = sorted(EVENT_FIELDS - keys)
        extra = sorted(keys - EVENT_FIELDS)
        raise ValueError(f"event fields wrong (missing {missing}, unexpected {extra})")
    validate_tenant(event["tenant"])
    if not _is_int(event["sequence"], 1):
        raise ValueError("sequence must be an integer >= 1")
    if not isinstance(event["time"], str) or TIME_PATTERN.fullmatch(event["time"]) is None:
        raise ValueError("time must be UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'")
    for name in ("actor", "action"):
        if not isinstance(event[name], str) or not event[name]:
            raise ValueError(f"{name} must be a non-empty string")
    for name in ("target_type", "target_id"):
        if not isinstance(event[name], str):
            raise ValueError(f"{name} must be a string")
    if not isinstance(event["details"], dict):
        raise ValueError("details must be a JSON object")
    _check_json_value(event["details"], "details")
    if not _is_hex64(event["prev_hash"]):
        raise ValueError("prev_hash must be 64 lowercase hex characters")
    if "hash" in event and not _is_hex64(event["hash"]):
        raise ValueError("hash must be 64 lowercase hex characters")
    return {k: event[k] for k in EVENT_FIELDS}


def canonical_bytes(event: dict[str, Any]) -> bytes:
    """Domain-separated canonical encoding of an event (without ``hash``)."""
    return EVENT_DOMAIN + json_bytes(event_body(event))


def compute_hash(event: dict[str, Any]) -> str:
    """SHA-256 hex of the canonical encoding."""
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def genesis_hash(tenant: str | None) -> str:
    """Tenant-bound prev_hash of sequence 1."""
    validate_tenant(tenant)
    return hashlib.sha256(GENESIS_DOMAIN + json_bytes(tenant)).hexdigest()


def encode_event_line(event: dict[str, Any]) -> bytes:
    """The canonical ``events.jsonl`` line of a sealed event (no newline)."""
    body = event_body(event)
    if "hash" not in event:
        raise ValueError("event has no hash")
    body["hash"] = event["hash"]
    return json_bytes(body)


def checkpoint_body(
    kind: str,
    tenant: str | None,
    sequence: int,
    head_hash: str,
    signed_at: str,
    first_sequence: int | None = None,
    first_prev_hash: str | None = None,
) -> dict[str, Any]:
    """Validate a checkpoint's signed fields and return them; ``first_*`` only for ``kind == "export"``."""
    validate_tenant(tenant)
    if not _is_int(sequence, 0):
        raise ValueError("checkpoint sequence must be an integer >= 0")
    if not _is_hex64(head_hash):
        raise ValueError("head_hash must be 64 lowercase hex characters")
    if not isinstance(signed_at, str) or TIME_PATTERN.fullmatch(signed_at) is None:
        raise ValueError("signed_at must be UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'")
    body: dict[str, Any] = {
        "kind": kind,
        "tenant": tenant,
        "sequence": sequence,
        "head_hash": head_hash,
        "signed_at": signed_at,
    }
    if kind == "export":
        if not _is_int(first_sequence, 1) or first_sequence > sequence + 1:
            raise ValueError("first_sequence must be an integer in 1..sequence+1")
        if not _is_hex64(first_prev_hash):
            raise ValueError("first_prev_hash must be 64 lowercase hex characters")
        if first_sequence == sequence + 1 and first_prev_hash != head_hash:
            raise ValueError("an empty export must have first_prev_hash == head_hash")
        body["first_sequence"] = first_sequence
        body["first_prev_hash"] = first_prev_hash
    return body


def checkpoint_payload_of(checkpoint: dict[str, Any]) -> bytes:
    """The bytes the checkpoint's signature covers (ValueError if malformed)."""
    if not isinstance(checkpoint, dict):
        raise ValueError("checkpoint must be a JSON object")
    kind = checkpoint.get("kind")
    base = {"kind", "tenant", "sequence", "head_hash", "signed_at", "key_id", "signature"}
    expected = base | {"first_sequence", "first_prev_hash"} if kind == "export" else base
    if kind not in CHECKPOINT_KINDS or set(checkpoint) != expected:
        raise ValueError("checkpoint fields wrong")
    body = checkpoint_body(
        kind,
        checkpoint["tenant"],
        checkpoint["sequence"],
        checkpoint["head_hash"],
        checkpoint["signed_at"],
        checkpoint.get("first_sequence"),
        checkpoint.get("first_prev_hash"),
    )
    return CHECKPOINT_DOMAIN + json_bytes(body)


def _csv_cell(value: str) -> str:
    """Neutralise spreadsheet formula injection from attacker-influenced strings."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def events_to_csv(events: list[dict[str, Any]]) -> bytes:
    """``events.csv``: the spreadsheet view (details as compact sorted JSON), as exported and re-rendered."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in events:
        details = json.dumps(e["details"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        row = [
            str(e["sequence"]),
            e["time"],
            "" if e["tenant"] is None else e["tenant"],
            e["actor"],
            e["action"],
            e["target_type"],
            e["target_id"],
            details,
            e["prev_hash"],
            e["hash"],
        ]
        writer.writerow([_csv_cell(v) for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# ---------------------------------------------------------------------------- keys


def load_public_key_pem(data: bytes) -> Ed25519PublicKey:
    """Parse an Ed25519 PEM public key."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw key bytes that key ids and fingerprints are computed over."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """Full sha256 hex of the raw public key, printed for humans to compare out of band."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short key id stored in checkpoints: the first 16 hex chars of the fingerprint."""
    return key_fingerprint(public_key)[:KEY_ID_HEX_CHARS]


def decode_signature(text: object) -> bytes:
    """Strict base64: alphabet, padding and unused bits must be canonical (no malleable forms)."""
    if not isinstance(text, str):
        raise ValueError("signature must be a string")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("signature is not canonical base64 of 64 bytes")
    return raw


# ---------------------------------------------------------------------------- bundle


def _strict_json(data: bytes, what: str, sequence: int | None = None) -> Any:
    """Parse JSON refusing duplicate keys, NaN/Infinity and invalid UTF-8 (ambiguity = tampering)."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in items:
            if k in out:
                raise ValueError(f"duplicate key {k!r}")
            out[k] = v
        return out

    def constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise VerificationError(f"{what} is not valid JSON ({str(exc)[:120]})", sequence) from None


def _read_members(data: bytes) -> dict[str, bytes]:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise VerificationError("not a readable zip archive (truncated or corrupt bundle)") from None
    with zf:
        infos = zf.infolist()
        names = [i.filename for i in infos]
        if len(names) != len(set(names)):
            raise VerificationError("bundle contains duplicate file names")
        expected = {MANIFEST, *HASHED_FILES}
        if set(names) != expected:
            missing = sorted(expected - set(names))
            extra = sorted(set(names) - expected)
            raise VerificationError(f"bundle files wrong (missing {missing}, unexpected {extra})")
        out: dict[str, bytes] = {}
        for info in infos:
            if info.file_size > MAX_MEMBER_BYTES:
                raise VerificationError(f"{info.filename} is too large")
            try:
                out[info.filename] = zf.read(info)
            except Exception as exc:  # CRC errors, zlib errors, truncation, encryption...
                raise VerificationError(
                    f"cannot read {info.filename} from the archive ({exc.__class__.__name__})"
                ) from None
    return out


class Report:
    """Summary of a successful verification."""

    def __init__(
        self,
        tenant: str | None,
        events: int,
        first: int | None,
        last: int | None,
        checkpoints: int,
        fingerprint: str,
        pinned: bool,
        export_signed_at: str,
    ) -> None:
        self.tenant = tenant
        self.events = events
        self.first = first
        self.last = last
        self.checkpoints = checkpoints
        self.fingerprint = fingerprint
        self.pinned = pinned
        self.export_signed_at = export_signed_at

    def line(self) -> str:
        """The ``OK: ...`` line."""
        tenant = "<platform>" if self.tenant is None else self.tenant
        seq = f"seq {self.first}..{self.last}" if self.events else "no events"
        return (
            f"OK: tenant {tenant}, events {self.events} ({seq}), "
            f"checkpoints {self.checkpoints} verified, key fingerprint {self.fingerprint}"
        )


_UNSET: Any = object()


def verify_bundle(
    data: bytes,
    *,
    public_key_pem: bytes | None = None,
    key_id: str | None = None,
    tenant: Any = _UNSET,
) -> Report:
    """Verify a bundle; raises :class:`VerificationError` at the first problem.

    ``public_key_pem`` / ``key_id`` pin the signing key obtained out of band; ``tenant`` pins the
    expected tenant (``None`` for the platform chain).
    """
    if key_id is not None and re.fullmatch(r"[0-9a-fA-F]{16,64}", key_id) is None:
        raise ValueError("key_id must be 16 to 64 hex characters")  # an empty prefix would match any key
    files = _read_members(data)

    # 1. Manifest and file hashes (catches corruption and naive edits; not a signature).
    manifest = _strict_json(files[MANIFEST], MANIFEST)
    if not isinstance(manifest, dict):
        raise VerificationError("manifest is not a JSON object")
    if manifest.get("format") != BUNDLE_FORMAT or manifest.get("format_version") != BUNDLE_FORMAT_VERSION:
        raise VerificationError("unsupported bundle format or version")
    listed = manifest.get("files")
    if not isinstance(listed, dict) or set(listed) != set(HASHED_FILES):
        raise VerificationError("manifest file list is wrong")
    for name in HASHED_FILES:
        if hashlib.sha256(files[name]).hexdigest() != listed[name]:
            raise VerificationError(f"manifest hash mismatch for {name} (file altered after export)")
    bundle_tenant = manifest.get("tenant")
    try:
        validate_tenant(bundle_tenant)
    except ValueError:
        raise VerificationError("manifest tenant is invalid") from None
    if tenant is not _UNSET and bundle_tenant != tenant:
        raise VerificationError(f"bundle is for tenant {bundle_tenant!r}, expected {tenant!r}")

    # 2. Keys: the bundle's key must be the pinned one, when the reviewer pinned one.
    try:
        bundle_key = load_public_key_pem(files[PUBLIC_KEY])
    except Exception:
        raise VerificationError("public_key.pem is not a valid Ed25519 public key") from None
    fingerprint = key_fingerprint(bundle_key)
    if public_key_pem is not None:
        pinned = load_public_key_pem(public_key_pem)
        if key_fingerprint(pinned) != fingerprint:
            raise VerificationError(
                f"bundle public key (fingerprint {fingerprint}) is not the pinned key "
                f"(fingerprint {key_fingerprint(pinned)}): public key swapped"
            )
    if key_id is not None and not fingerprint.startswith(key_id.lower()):
        raise VerificationError(
            f"bundle public key (fingerprint {fingerprint}) does not match pinned key id {key_id}: public key swapped"
        )
    kid = fingerprint[:KEY_ID_HEX_CHARS]
    if manifest.get("key_id") != kid:
        raise VerificationError("manifest key_id does not match public_key.pem (public key swapped?)")

    # 3. Checkpoints: every signature, tenant and key id.
    checkpoints = _strict_json(files[CHECKPOINTS], CHECKPOINTS)
    if not isinstance(checkpoints, list):
        raise VerificationError("checkpoints.json is not a list")
    signed: dict[int, str] = {}
    for i, cp in enumerate(checkpoints):
        seq = cp.get("sequence") if isinstance(cp, dict) else None
        at = seq if _is_int(seq, 0) else None
        try:
            payload = checkpoint_payload_of(cp)
        except ValueError as exc:
            raise VerificationError(f"checkpoint #{i + 1} is malformed: {exc}", at) from None
        if cp["tenant"] != bundle_tenant:
            raise VerificationError(
                f"checkpoint is for tenant {cp['tenant']!r}, not {bundle_tenant!r} (replayed?)", at
            )
        if cp["key_id"] != kid:
            raise VerificationError(
                f"checkpoint key id {cp['key_id']!r} is not the bundle key {kid} (public key swapped?)", at
            )
        try:
            bundle_key.verify(decode_signature(cp["signature"]), payload)
        except (InvalidSignature, ValueError):
            raise VerificationError("invalid checkpoint signature", at) from None
        if signed.setdefault(cp["sequence"], cp["head_hash"]) != cp["head_hash"]:
            raise VerificationError(
                "two signed checkpoints disagree on the head hash (chain was rewritten)", at
            )
    exports = [cp for cp in checkpoints if cp["kind"] == "export"]
    if len(exports) != 1:
        raise VerificationError(f"expected exactly one export checkpoint, found {len(exports)}")
    export = exports[0]
    first_seq, first_prev = export["first_sequence"], export["first_prev_hash"]
    if first_seq == 1 and first_prev != genesis_hash(bundle_tenant):
        raise VerificationError(
            "chain does not start at this tenant's genesis hash (replayed from another tenant?)", 1
        )

    # 4. Events: canonical lines, tenant, continuity, links, hashes, and every signed checkpoint
    #    inside the range (checked as we go, so the earliest rewritten event is reported).
    if 0 in signed and signed[0] != genesis_hash(bundle_tenant):
        raise VerificationError("signed checkpoint at sequence 0 is not this tenant's genesis", 0)
    if signed.get(first_seq - 1, first_prev) != first_prev:
        raise VerificationError("export start does not match the signed checkpoint before it", first_seq - 1)
    jsonl = files[EVENTS_JSONL]
    if jsonl and not jsonl.endswith(b"\n"):
        raise VerificationError("events.jsonl does not end with a newline (truncated?)")
    events: list[dict[str, Any]] = []
    expected_seq, expected_prev = first_seq, first_prev
    for line_no, line in enumerate(jsonl.split(b"\n")[:-1] if jsonl else [], start=1):
        where = expected_seq
        event = _strict_json(line, f"events.jsonl line {line_no}", where) if line else None
        if not isinstance(event, dict):
            raise VerificationError(f"events.jsonl line {line_no} is not a JSON object", where)
        try:
            encoded = encode_event_line(event)
        except ValueError as exc:
            raise VerificationError(f"malformed event on line {line_no}: {exc}", where) from None
        if encoded != line:
            raise VerificationError(f"events.jsonl line {line_no} is not canonically encoded (edited)", where)
        if event["tenant"] != bundle_tenant:
            raise VerificationError(
                f"event belongs to tenant {event['tenant']!r}, not {bundle_tenant!r} (replayed from another tenant?)",
                where,
            )
        if event["sequence"] != expected_seq:
            raise VerificationError(
                f"sequence gap or reorder: expected {expected_seq}, found {event['sequence']}", where
            )
        if event["prev_hash"] != expected_prev:
            raise VerificationError(
                "prev_hash does not link to the previous event (deleted, inserted or reordered)", where
            )
        if compute_hash(event) != event["hash"]:
            raise VerificationError("hash mismatch: event content was altered", where)
        if signed.get(where, event["hash"]) != event["hash"]:
            raise VerificationError(
                "head hash does not match the signed checkpoint (events rewritten or forged)", where
            )
        if where > export["sequence"]:
            raise VerificationError("event after the export checkpoint (not covered by any signature)", where)
        events.append(event)
        expected_seq, expected_prev = expected_seq + 1, event["hash"]
    last_seq = expected_seq - 1
    if last_seq < export["sequence"]:
        raise VerificationError(
            f"chain ends at sequence {last_seq} but the export checkpoint covers up to {export['sequence']} "
            "(events truncated)",
            last_seq + 1,
        )

    # 5. Manifest bookkeeping must agree with what was verified.
    facts = {
        "event_count": len(events),
        "checkpoint_count": len(checkpoints),
        "first_sequence": events[0]["sequence"] if events else None,
        "last_sequence": last_seq if events else None,
        "first_prev_hash": first_prev if events else None,
    }
    for field, value in facts.items():
        if manifest.get(field) != value or type(manifest.get(field)) is not type(value):
            raise VerificationError(
                f"manifest {field} is {manifest.get(field)!r} but the bundle has {value!r}"
            )
    for field in ("since", "until", "created_at"):
        value = manifest.get(field)
        if not (value is None and field != "created_at") and not (
            isinstance(value, str) and TIME_PATTERN.fullmatch(value)
        ):
            raise VerificationError(f"manifest {field} is not a UTC timestamp")

    # 6. The spreadsheet view must say exactly what the verified events say.
    if files[EVENTS_CSV] != events_to_csv(events):
        raise VerificationError("events.csv does not match events.jsonl (spreadsheet view altered)")

    return Report(
        bundle_tenant,
        len(events),
        events[0]["sequence"] if events else None,
        last_seq if events else None,
        len(checkpoints),
        fingerprint,
        public_key_pem is not None or key_id is not None,
        export["signed_at"],
    )


# ---------------------------------------------------------------------------- CLI


def _printable(text: str) -> str:
    """Escape everything but printable ASCII: bundle strings must not drive the terminal."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Verify a Sotto audit export bundle offline.")
    parser.add_argument("bundle", help="the bundle .zip")
    parser.add_argument(
        "--public-key", metavar="PEM", help="signing key obtained independently from /api/v1/audit/public-key"
    )
    parser.add_argument(
        "--key-id", metavar="HEX", help="expected key id (16 hex) or full fingerprint (64 hex)"
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--tenant", metavar="SLUG", help="fail unless the bundle is for this tenant")
    group.add_argument("--platform", action="store_true", help="fail unless the bundle is the platform chain")
    args = parser.parse_args(argv)

    if args.key_id is not None and not re.fullmatch(r"[0-9a-fA-F]{16,64}", args.key_id):
        parser.error("--key-id must be 16 to 64 hex characters")
    pinned_pem = None
    if args.public_key is not None:
        try:
            with open(args.public_key, "rb") as fh:
                pinned_pem = fh.read()
            load_public_key_pem(pinned_pem)
        except (OSError, ValueError) as exc:
            parser.error(f"--public-key: cannot load an Ed25519 PEM public key ({exc.__class__.__name__})")
    expected_tenant: Any = _UNSET
    if args.tenant is not None:
        expected_tenant = args.tenant
    elif args.platform:
        expected_tenant = None

    try:
        with open(args.bundle, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        sys.stdout.write(
            _printable(f"FAIL: cannot read bundle ({exc.strerror or exc.__class__.__name__})") + "\n"
        )
        return 1
    try:
        report = verify_bundle(data, public_key_pem=pinned_pem, key_id=args.key_id, tenant=expected_tenant)
    except VerificationError as exc:
        prefix = "FAIL" if exc.sequence is None else f"FAIL at sequence {exc.sequence}"
        sys.stdout.write(_printable(f"{prefix}: {exc.reason}") + "\n")
        return 1
    except Exception as exc:  # never a traceback: a hostile bundle must still yield a verdict
        sys.stdout.write(_printable(f"FAIL: malformed bundle ({exc.__class__.__name__})") + "\n")
        return 1
    sys.stdout.write(_printable(report.line()) + "\n")
    if not report.pinned:
        sys.stderr.write(
            "WARNING: no --public-key/--key-id given; the key inside the bundle was trusted. Compare the "
            "fingerprint above with /api/v1/audit/public-key.\n"
        )
    sys.stderr.write(_printable(f"note: export checkpoint signed at {report.export_signed_at}") + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Tamper-evident audit chain: canonical encoding, hashing, chain checks, signed checkpoints.

Pure Python (stdlib + ``cryptography``), no Django: the models, DB triggers, export endpoint
and the offline verifier (``verify_audit_bundle.py``, which re-implements the encoding on
purpose so that it has no dependency on this package) all agree on the formats below.
A test asserts that both implementations produce identical bytes.

Event (a ``dict``; exactly these keys, plus ``"hash"`` once sealed)
---------------------------------------------------------------------
``tenant``       tenant slug (non-empty ``str``) or ``None`` for the platform chain
``sequence``     ``int`` >= 1, per tenant, contiguous: 1, 2, 3, ...
``time``         UTC, exactly ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (see :func:`format_time`)
``actor``        non-empty ``str``: ``"user:alice"``, ``"key:sk_ab12"``, ``"system"``
``action``       non-empty ``str``
``target_type``  ``str`` (may be ``""``)
``target_id``    ``str``, pseudonymous (may be ``""``)
``details``      JSON object; values: ``str``, ``int`` (|n| <= 2**53-1), ``bool``, ``None``, lists,
                 objects with ``str`` keys. Floats are rejected: their text form is not stable
                 across JSON stores/languages and a re-serialised float would break the hash.
``prev_hash``    64 lowercase hex chars: ``hash`` of the previous event, or the genesis hash
``hash``         64 lowercase hex chars (see below)

Canonical encoding (``canonical_bytes``)::

    b"sotto-audit-v1\\x00" + UTF-8( json.dumps(E, sort_keys=True, separators=(",", ":"),
                                               ensure_ascii=False, allow_nan=False) )

where ``E`` is the event *without* ``"hash"``. That is: keys sorted by code point, no
whitespace, non-ASCII emitted literally as UTF-8; inside strings ``"`` and ``\\`` are escaped,
U+0008/0009/000A/000C/000D as ``\\b \\t \\n \\f \\r`` and other U+0000..U+001F as ``\\u00XX``
(lowercase hex); nothing else is escaped. ``None`` -> ``null``, booleans -> ``true``/``false``.

``hash = sha256(canonical_bytes(event)).hexdigest()`` (lowercase).

Genesis (``prev_hash`` of sequence 1)::

    sha256(b"sotto-audit-genesis-v1\\x00" + UTF-8(json.dumps(tenant))).hexdigest()

i.e. the JSON text ``null`` for the platform chain or ``"acme"`` for tenant ``acme``, so each
chain is bound to its tenant from the first link: another tenant's events cannot be replayed.

Checkpoint payload (what Ed25519 signs, ``checkpoint_payload``)::

    b"sotto-audit-checkpoint-v1\\x00" + canonical JSON of
      {"kind": "periodic", "tenant": T, "sequence": N, "head_hash": H, "signed_at": S}
    or, for the checkpoint signed when a bundle is exported (it covers sequences F..N and
    pins both ends, so neither leading nor trailing events can be dropped unnoticed):
      {"kind": "export", "tenant": T, "sequence": N, "head_hash": H, "signed_at": S,
       "first_sequence": F, "first_prev_hash": P}

``sequence`` 0 with the genesis hash is the (empty) head of a new chain. An empty export
has ``first_sequence == sequence + 1`` and ``first_prev_hash == head_hash``.

Checkpoint dict (``sign_checkpoint``): the payload fields plus
``"key_id"`` (first 16 hex chars of sha256(raw 32-byte public key)) and ``"signature"``
(standard base64 with padding of the 64-byte Ed25519 signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

EVENT_DOMAIN = b"sotto-audit-v1\x00"
GENESIS_DOMAIN = b"sotto-audit-genesis-v1\x00"
CHECKPOINT_DOMAIN = b"sotto-audit-checkpoint-v1\x00"

EVENT_FIELDS: frozenset[str] = frozenset(
    {"tenant", "sequence", "time", "actor", "action", "target_type", "target_id", "details", "prev_hash"}
)
CHECKPOINT_KINDS = ("periodic", "export")
KEY_ID_HEX_CHARS = 16
MAX_SAFE_INT = 2**53 - 1

_HEX64 = re.compile(r"[0-9a-f]{64}")
TIME_PATTERN = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z"
)  # ASCII digits only
_MAX_DEPTH = 32


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check; ``bad_sequence`` is the first sequence at fault (None if ok)."""

    ok: bool
    bad_sequence: int | None
    reason: str


# ---------------------------------------------------------------------------- encoding


def format_time(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; naive datetimes are refused (ambiguous zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    u = value.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


def _is_hex64(value: object) -> bool:
    return isinstance(value, str) and _HEX64.fullmatch(value) is not None


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


def _validate_tenant(tenant: object) -> None:
    if tenant is not None and (not isinstance(tenant, str) or not tenant):
        raise ValueError("tenant must be a non-empty string or None")


def _json_bytes(obj: object) -> bytes:
    """The canonical JSON text of ``obj`` as UTF-8 (lone surrogates -> ValueError)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("strings must be valid Unicode (no lone surrogates)") from exc


def _event_body(event: dict[str, Any]) -> dict[str, Any]:
    """Validate ``event`` and return its hashed fields (everything but ``hash``)."""
    if not isinstance(event, dict):
        raise ValueError("event must be a JSON object")
    keys = set(event) - {"hash"}
    if keys != EVENT_FIELDS:
        missing = sorted(EVENT_FIELDS - keys)
        extra = sorted(keys - EVENT_FIELDS)
        raise ValueError(f"event fields wrong (missing {missing}, unexpected {extra})")
    _validate_tenant(event["tenant"])
    seq = event["sequence"]
    if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= MAX_SAFE_INT:
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
    """Domain-separated canonical encoding hashed into the chain (format in module doc)."""
    return EVENT_DOMAIN + _json_bytes(_event_body(event))


def compute_hash(event: dict[str, Any]) -> str:
    """SHA-256 hex of :func:`canonical_bytes`; ``event["hash"]`` itself is ignored."""
    return hashlib.sha256(canonical_bytes(event)).hexdigest()


def genesis_hash(tenant: str | None) -> str:
    """Tenant-bound ``prev_hash`` of sequence 1, so chains cannot be swapped between tenants."""
    _validate_tenant(tenant)
    return hashlib.sha256(GENESIS_DOMAIN + _json_bytes(tenant)).hexdigest()


def make_event(
    *,
    tenant: str | None,
    sequence: int,
    time: str | datetime,
    actor: str,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any],
    prev_hash: str,
) -> dict[str, Any]:
    """Build a sealed event (fields + ``hash``); validates everything the encoding relies on."""
    event: dict[str, Any] = {
        "tenant": tenant,
        "sequence": sequence,
        "time": format_time(time) if isinstance(time, datetime) else time,
        "actor": actor,
        "action": action,
        "target_type": target_type,
        "target_id": target_id,
        "details": details,
        "prev_hash": prev_hash,
    }
    event["hash"] = compute_hash(event)
    return event


def encode_event_line(event: dict[str, Any]) -> bytes:
    """One ``events.jsonl`` line: canonical JSON of the sealed event (with ``hash``), no newline."""
    body = _event_body(event)
    if "hash" not in event:
        raise ValueError("event is not sealed (no hash)")
    body["hash"] = event["hash"]
    return _json_bytes(body)


# ---------------------------------------------------------------------------- chain


def verify_chain(
    events: list[dict[str, Any]],
    *,
    tenant: str | None,
    start_sequence: int = 1,
    start_prev_hash: str | None = None,
) -> VerifyResult:
    """Check tenant, contiguous sequences, prev links and recomputed hashes, in order.

    By default the chain must start at sequence 1 on the tenant's genesis hash. For a
    slice that starts mid-chain pass ``start_sequence`` and the ``start_prev_hash`` of its
    first event (trusted only as far as whatever signed it, e.g. an export checkpoint).
    """
    _validate_tenant(tenant)
    if start_prev_hash is None:
        if start_sequence != 1:
            raise ValueError("start_prev_hash is required when start_sequence != 1")
        start_prev_hash = genesis_hash(tenant)
    expected_seq, expected_prev = start_sequence, start_prev_hash
    for event in events:
        try:
            _event_body(event)
        except ValueError as exc:
            return VerifyResult(False, expected_seq, f"malformed event: {exc}")
        if "hash" not in event:
            return VerifyResult(False, expected_seq, "malformed event: no hash")
        if event["tenant"] != tenant:
            return VerifyResult(
                False,
                expected_seq,
                f"event belongs to tenant {event['tenant']!r}, not {tenant!r} (replayed from another chain?)",
            )
        if event["sequence"] != expected_seq:
            return VerifyResult(
                False,
                expected_seq,
                f"sequence gap or reorder: expected {expected_seq}, found {event['sequence']}",
            )
        if event["prev_hash"] != expected_prev:
            return VerifyResult(
                False,
                expected_seq,
                "prev_hash does not link to the previous event (deleted, inserted or reordered)",
            )
        if compute_hash(event) != event["hash"]:
            return VerifyResult(False, expected_seq, "hash mismatch: event content was altered")
        expected_seq, expected_prev = expected_seq + 1, event["hash"]
    return VerifyResult(True, None, "ok")


# ---------------------------------------------------------------------------- keys


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    """The 32 raw key bytes that key ids and fingerprints are computed over."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """Full sha256 hex of the raw public key, printed for humans to compare out of band."""
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()


def key_id(public_key: Ed25519PublicKey) -> str:
    """Short key id stored in checkpoints: the first 16 hex chars of the fingerprint."""
    return key_fingerprint(public_key)[:KEY_ID_HEX_CHARS]


def generate_private_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 signing key."""
    return Ed25519PrivateKey.generate()


def private_key_to_pem(private_key: Ed25519PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM; protect it with file permissions (see :func:`write_private_key_file`)."""
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_to_pem(public_key: Ed25519PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM, the form published at /api/v1/audit/public-key and in bundles."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def load_private_key_pem(data: bytes, password: bytes | None = None) -> Ed25519PrivateKey:
    """Parse a PEM private key, refusing any algorithm other than Ed25519."""
    key = serialization.load_pem_private_key(data, password=password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("audit signing key must be Ed25519")
    return key


def load_public_key_pem(data: bytes) -> Ed25519PublicKey:
    """Parse a PEM public key, refusing any algorithm other than Ed25519."""
    key = serialization.load_pem_public_key(data)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("audit public key must be Ed25519")
    return key


def write_private_key_file(private_key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> None:
    """Create ``path`` with mode 0600 (never overwrite, never follow a symlink) and write the PEM."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask can only narrow, but be explicit
        with os.fdopen(fd, "wb") as fh:
            fd = -1
            fh.write(private_key_to_pem(private_key))
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if fd != -1:
            os.close(fd)


def read_private_key_file(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Load the signing key; refuse a symlink or a file readable by group/others."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{os.fspath(path)}: audit signing key must have mode 0600")
        return load_private_key_pem(fh.read())


def load_or_create_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read the key at ``path``, creating it (0600) on first use; safe against a create race."""
    if not Path(path).exists():
        key = generate_private_key()
        try:
            write_private_key_file(key, path)
            return key
        except FileExistsError:
            pass  # another process won the race: use its key
    return read_private_key_file(path)


# ---------------------------------------------------------------------------- checkpoints


def _checkpoint_body(
    tenant: str | None,
    sequence: int,
    head_hash: str,
    signed_at: str,
    first_sequence: int | None,
    first_prev_hash: str | None,
) -> dict[str, Any]:
    _validate_tenant(tenant)
    if not isinstance(sequence, int) or isinstance(sequence, bool) or not 0 <= sequence <= MAX_SAFE_INT:
        raise ValueError("checkpoint sequence must be an integer >= 0")
    if not _is_hex64(head_hash):
        raise ValueError("head_hash must be 64 lowercase hex characters")
    if not isinstance(signed_at, str) or TIME_PATTERN.fullmatch(signed_at) is None:
        raise ValueError("signed_at must be UTC 'YYYY-MM-DDTHH:MM:SS.ffffffZ'")
    body: dict[str, Any] = {
        "kind": "periodic",
        "tenant": tenant,
        "sequence": sequence,
        "head_hash": head_hash,
        "signed_at": signed_at,
    }
    if first_sequence is None and first_prev_hash is None:
        return body
    if (
        not isinstance(first_sequence, int)
        or isinstance(first_sequence, bool)
        or not 1 <= first_sequence <= sequence + 1
    ):
        raise ValueError("first_sequence must be an integer in 1..sequence+1")
    if not _is_hex64(first_prev_hash):
        raise ValueError("first_prev_hash must be 64 lowercase hex characters")
    if first_sequence == sequence + 1 and first_prev_hash != head_hash:
        raise ValueError("an empty export must have first_prev_hash == head_hash")
    body.update(kind="export", first_sequence=first_sequence, first_prev_hash=first_prev_hash)
    return body


def checkpoint_payload(
    tenant: str | None,
    sequence: int,
    head_hash: str,
    signed_at: str | datetime,
    *,
    first_sequence: int | None = None,
    first_prev_hash: str | None = None,
) -> bytes:
    """The exact bytes Ed25519 signs; export checkpoints also pin the first exported link."""
    when = format_time(signed_at) if isinstance(signed_at, datetime) else signed_at
    body = _checkpoint_body(tenant, sequence, head_hash, when, first_sequence, first_prev_hash)
    return CHECKPOINT_DOMAIN + _json_bytes(body)


def sign_checkpoint(
    private_key: Ed25519PrivateKey,
    tenant: str | None,
    sequence: int,
    head_hash: str,
    signed_at: str | datetime,
    *,
    first_sequence: int | None = None,
    first_prev_hash: str | None = None,
) -> dict[str, Any]:
    """Sign a chain head; returns the JSON-ready checkpoint dict (payload fields, key_id, signature)."""
    when = format_time(signed_at) if isinstance(signed_at, datetime) else signed_at
    body = _checkpoint_body(tenant, sequence, head_hash, when, first_sequence, first_prev_hash)
    signature = private_key.sign(CHECKPOINT_DOMAIN + _json_bytes(body))
    body["key_id"] = key_id(private_key.public_key())
    body["signature"] = base64.b64encode(signature).decode("ascii")
    return body


def checkpoint_payload_of(checkpoint: dict[str, Any]) -> bytes:
    """Rebuild the signed payload from a checkpoint dict (ValueError if malformed)."""
    if not isinstance(checkpoint, dict):
        raise ValueError("checkpoint must be a JSON object")
    kind = checkpoint.get("kind")
    base = {"kind", "tenant", "sequence", "head_hash", "signed_at", "key_id", "signature"}
    expected = base | {"first_sequence", "first_prev_hash"} if kind == "export" else base
    if kind not in CHECKPOINT_KINDS or set(checkpoint) != expected:
        raise ValueError("checkpoint fields wrong")
    return checkpoint_payload(
        checkpoint["tenant"],
        checkpoint["sequence"],
        checkpoint["head_hash"],
        checkpoint["signed_at"],
        first_sequence=checkpoint.get("first_sequence"),
        first_prev_hash=checkpoint.get("first_prev_hash"),
    )


def _decode_signature(text: object) -> bytes:
    """Strict base64: alphabet, padding and unused bits must be canonical (no malleable forms)."""
    if not isinstance(text, str):
        raise ValueError("signature must be a string")
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("signature is not canonical base64 of 64 bytes")
    return raw


def verify_checkpoint(public_key: Ed25519PublicKey, checkpoint: dict[str, Any]) -> bool:
    """True iff well-formed, ``key_id`` names ``public_key`` and the signature verifies. Never raises."""
    try:
        payload = checkpoint_payload_of(checkpoint)
        if checkpoint["key_id"] != key_id(public_key):
            return False
        public_key.verify(_decode_signature(checkpoint["signature"]), payload)
    except (InvalidSignature, ValueError, TypeError, UnicodeError, binascii.Error):
        return False
    return True

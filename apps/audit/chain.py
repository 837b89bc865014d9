"""Tamper-evident audit chain: canonical encoding, hashing, chain checks, signed checkpoints.

Pure Python (stdlib + ``cryptography``), no Django: the models, DB triggers, export endpoint
and the offline verifier all agree on the formats below. The encoding itself (validation,
canonical bytes, hashes, checkpoint payloads, key ids) is defined once, in the standalone
verifier ``verify_audit_bundle.py``, and imported from there; this module adds what only the
writing side needs (building and sealing events, checking a chain, keys, signing).

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
import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apps.audit.verify_audit_bundle import (
    CHECKPOINT_DOMAIN,
    CHECKPOINT_KINDS,
    EVENT_DOMAIN,
    EVENT_FIELDS,
    GENESIS_DOMAIN,
    KEY_ID_HEX_CHARS,
    MAX_SAFE_INT,
    TIME_PATTERN,
    canonical_bytes,
    checkpoint_body,
    checkpoint_payload_of,
    compute_hash,
    decode_signature,
    encode_event_line,
    event_body,
    genesis_hash,
    json_bytes,
    key_fingerprint,
    key_id,
    load_public_key_pem,
    raw_public_key,
    validate_tenant,
)

__all__ = [
    "CHECKPOINT_DOMAIN",
    "CHECKPOINT_KINDS",
    "EVENT_DOMAIN",
    "EVENT_FIELDS",
    "GENESIS_DOMAIN",
    "KEY_ID_HEX_CHARS",
    "MAX_SAFE_INT",
    "TIME_PATTERN",
    "VerifyResult",
    "canonical_bytes",
    "checkpoint_payload",
    "checkpoint_payload_of",
    "compute_hash",
    "encode_event_line",
    "format_time",
    "generate_private_key",
    "genesis_hash",
    "key_fingerprint",
    "key_id",
    "load_or_create_private_key",
    "load_private_key_pem",
    "load_public_key_pem",
    "make_event",
    "private_key_to_pem",
    "public_key_to_pem",
    "raw_public_key",
    "read_private_key_file",
    "sign_checkpoint",
    "verify_chain",
    "verify_checkpoint",
    "write_private_key_file",
]


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of a chain check; ``bad_sequence`` is the first sequence at fault (None if ok)."""

    ok: bool
    bad_sequence: int | None
    reason: str


# ---------------------------------------------------------------------------- events


def format_time(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``; naive datetimes are refused (ambiguous zone)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("audit times must be timezone-aware")
    u = value.astimezone(UTC)
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}T{u.hour:02d}:{u.minute:02d}:{u.second:02d}"
        f".{u.microsecond:06d}Z"
    )


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
    validate_tenant(tenant)
    if start_prev_hash is None:
        if start_sequence != 1:
            raise ValueError("start_prev_hash is required when start_sequence != 1")
        start_prev_hash = genesis_hash(tenant)
    expected_seq, expected_prev = start_sequence, start_prev_hash
    for event in events:
        try:
            event_body(event)
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
    signed_at: str | datetime,
    first_sequence: int | None,
    first_prev_hash: str | None,
) -> dict[str, Any]:
    """The validated signed fields: an export checkpoint when ``first_*`` are given, else a periodic one."""
    when = format_time(signed_at) if isinstance(signed_at, datetime) else signed_at
    kind = "periodic" if first_sequence is None and first_prev_hash is None else "export"
    return checkpoint_body(kind, tenant, sequence, head_hash, when, first_sequence, first_prev_hash)


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
    body = _checkpoint_body(tenant, sequence, head_hash, signed_at, first_sequence, first_prev_hash)
    return CHECKPOINT_DOMAIN + json_bytes(body)


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
    body = _checkpoint_body(tenant, sequence, head_hash, signed_at, first_sequence, first_prev_hash)
    signature = private_key.sign(CHECKPOINT_DOMAIN + json_bytes(body))
    body["key_id"] = key_id(private_key.public_key())
    body["signature"] = base64.b64encode(signature).decode("ascii")
    return body


def verify_checkpoint(public_key: Ed25519PublicKey, checkpoint: dict[str, Any]) -> bool:
    """True iff well-formed, ``key_id`` names ``public_key`` and the signature verifies. Never raises."""
    try:
        payload = checkpoint_payload_of(checkpoint)
        if checkpoint["key_id"] != key_id(public_key):
            return False
        public_key.verify(decode_signature(checkpoint["signature"]), payload)
    except (InvalidSignature, ValueError, TypeError, UnicodeError, binascii.Error):
        return False
    return True

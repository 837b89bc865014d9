"""Envelope keys: master key → per-tenant keys → per-user keys, all AES-256-GCM.

What a caller may rely on:

- The **master key** comes from ``SOTTO_MASTER_KEY`` or ``SOTTO_MASTER_KEY_FILE`` (32 bytes,
  base64 or hex). Without either, the embedded default keeps one in ``<KEY_DIR>/master.key``
  (created once with mode 0600; a line on stderr says so). It never enters the database: each
  tenant key row records only the master key's id (a keyed fingerprint), so a wrong master key
  fails with a clear message instead of garbage.
- Each tenant has two independent key families (``TenantKey.purpose``):
  ``pseudonym`` (one version, never rotated: it is the HMAC key behind every stored pseudonym,
  see ``apps.tenancy.pseudonyms``) and ``enc`` (versioned; wraps per-user keys).
  A tenant key is wrapped under the master key with associated data binding tenant, purpose
  and version, so a wrapped key copied to another row does not open.
- **Per-user keys** are random 256-bit keys created by the owning app (``apps.profiles``) and
  stored there wrapped under the tenant's active ``enc`` version, with associated data binding
  tenant, version and the user's pseudonym (the *subject*). Destroying that wrapped blob
  destroys the user's data (crypto-shredding).
- **Rotation** (``tenant_key_rotate``): a new ``enc`` version becomes active and the previous one
  ``retiring`` (still able to unwrap); a Celery task re-wraps every user key under the new
  version in batches (``rewrap_batch``), then retires the drained version: its wrapped material is
  erased from the database. Reads never fail meanwhile: a reader that lost the race with
  retirement gets :class:`KeyVersionRetired` and re-reads its (by then re-wrapped) row.
- New user keys are wrapped under the active version read ``FOR SHARE``, so a rotation that is
  flipping versions waits for them, and retirement (which locks the version row) can never miss
  a key wrapped under it.

Apps that hold wrapped user keys register a :class:`WrappedKeyStore` (``apps.profiles`` does so
in its ``AppConfig.ready``, which also imports this module so the ``on_tenant_created`` hook that
creates a tenant's keys is registered). Tenants created before the keyring existed get their
keys lazily on first use.

All functions that touch the database expect to run inside a transaction scoped to the tenant
(``tenant_context`` or a ``TenantAPIView`` request); row-level security binds them.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import connection, transaction
from django.utils import timezone

from apps.core import audit
from apps.core.conf import sotto_setting
from apps.core.hooks import on_tenant_created
from apps.core.tenant_db import tenant_context
from apps.tenancy.models import TenantKey

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
_BLOB_FORMAT = b"\x01"  # first byte of every sealed blob: lets a later format coexist
ENC = TenantKey.Purpose.ENCRYPTION.value
PSEUDONYM = TenantKey.Purpose.PSEUDONYM.value


class KeyringError(RuntimeError):
    """The key hierarchy cannot serve this request (misconfiguration or tampering)."""


class DecryptionFailed(KeyringError):
    """A sealed blob did not open: wrong key, wrong associated data, or modified bytes."""


class KeyVersionRetired(KeyringError):
    """The tenant key version a blob names has been retired; re-read the row (it was re-wrapped)."""


# --- AEAD primitives ------------------------------------------------------------------------


def aead_seal(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM with a fresh random 96-bit nonce: ``format byte || nonce || ciphertext || tag``."""
    nonce = os.urandom(NONCE_BYTES)
    return _BLOB_FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, associated_data)


def aead_open(key: bytes, blob: bytes, associated_data: bytes) -> bytes:
    """Inverse of :func:`aead_seal`; raises :class:`DecryptionFailed` on any mismatch."""
    blob = bytes(blob)
    if len(blob) < 1 + NONCE_BYTES + TAG_BYTES or blob[:1] != _BLOB_FORMAT:
        raise DecryptionFailed("not a sealed blob")
    nonce, body = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
    try:
        return AESGCM(key).decrypt(nonce, body, associated_data)
    except InvalidTag as exc:
        raise DecryptionFailed("authentication failed (wrong key, context or modified ciphertext)") from exc


# --- master key -----------------------------------------------------------------------------

_master_lock = threading.Lock()
_master: bytes | None = None


def parse_master_key(text: str, *, source: str) -> bytes:
    """32 bytes from 64 hex digits or base64 (standard or URL-safe, padding optional)."""
    text = text.strip()
    raw: bytes | None = None
    if len(text) == 2 * KEY_BYTES:
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raw = None
    if raw is None:
        padded = text + "=" * (-len(text) % 4)
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                candidate = decode(padded.encode("ascii"))
            except (binascii.Error, ValueError, UnicodeEncodeError):
                continue
            if len(candidate) == KEY_BYTES:
                raw = candidate
                break
    if raw is None or len(raw) != KEY_BYTES:
        raise KeyringError(f"the master key from {source} must be 32 bytes, base64- or hex-encoded")
    return raw


def _master_key_file() -> Path:
    return Path(sotto_setting("KEY_DIR")) / "master.key"


def _generate_master_key_file(path: Path) -> None:
    """Create ``path`` (mode 0600) atomically; a concurrent creator's file wins, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii") + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            return
    finally:
        tmp.unlink(missing_ok=True)
    sys.stderr.write(
        f"sotto: generated a new master key at {path} (mode 0600). Back it up: losing it makes every "
        "encrypted profile unreadable. Production should set SOTTO_MASTER_KEY or SOTTO_MASTER_KEY_FILE.\n"
    )


def master_key() -> bytes:
    global _master
    with _master_lock:
        if _master is None:
            configured = sotto_setting("MASTER_KEY")
            if configured:
                _master = parse_master_key(str(configured), source="SOTTO_MASTER_KEY(_FILE)")
            else:
                path = _master_key_file()
                if not path.exists():
                    _generate_master_key_file(path)
                if path.stat().st_mode & 0o077:
                    sys.stderr.write(f"sotto: warning: {path} is readable by group or others; chmod 600 it\n")
                _master = parse_master_key(path.read_text(), source=str(path))
        return _master


def master_key_id(key: bytes | None = None) -> str:
    """A keyed fingerprint of the master key (safe to store): tells which master wrapped a row."""
    return hmac.new(key or master_key(), b"sotto/v1/master-key-id", "sha256").hexdigest()[:16]


# --- tenant keys ----------------------------------------------------------------------------

_cache_lock = threading.Lock()
_cache: dict[tuple[int, str, int], tuple[float, bytes]] = {}


def forget_cached_keys() -> None:
    """Drop every unwrapped key and the master key from this process (tests, master-key changes)."""
    global _master
    with _cache_lock:
        _cache.clear()
    with _master_lock:
        _master = None


def _cache_get(tenant_id: int, purpose: str, version: int) -> bytes | None:
    with _cache_lock:
        hit = _cache.get((tenant_id, purpose, version))
    if hit is None or hit[0] < time.monotonic():
        return None
    return hit[1]


def _cache_put(tenant_id: int, purpose: str, version: int, key: bytes) -> None:
    # The pseudonym key never changes, so it may live as long as the process.
    ttl = float("inf") if purpose == PSEUDONYM else float(sotto_setting("KEY_CACHE_TTL_S"))
    if ttl > 0:
        with _cache_lock:
            _cache[(tenant_id, purpose, version)] = (time.monotonic() + ttl, key)


def _tenant_key_ad(tenant_id: int, purpose: str, version: int) -> bytes:
    return f"sotto/v1/tenant-key|{int(tenant_id)}|{purpose}|{int(version)}".encode()


def previous_master_keys() -> dict[str, bytes]:
    """Retired master keys by id (``SOTTO_PREVIOUS_MASTER_KEYS``), readable during a master rotation."""
    keys = [parse_master_key(text, source="SOTTO_PREVIOUS_MASTER_KEYS") for text in sotto_setting("PREVIOUS_MASTER_KEYS")]
    return {master_key_id(key): key for key in keys}


def _unwrap_tenant_key(tenant_id: int, purpose: str, version: int, wrapped: bytes, stored_master_id: str) -> bytes:
    master = master_key()
    if stored_master_id != master_key_id(master):
        # Mid master-key rotation: rows not yet re-wrapped still open under their old master.
        master = previous_master_keys().get(stored_master_id, master)
    try:
        return aead_open(master, wrapped, _tenant_key_ad(tenant_id, purpose, version))
    except DecryptionFailed as exc:
        current = master_key_id(master)
        hint = (
            f"it was wrapped under master key {stored_master_id}, but the configured master key is {current}"
            if stored_master_id != current
            else "the wrapped key or its row was modified"
        )
        raise KeyringError(f"tenant {tenant_id} {purpose} key v{version} does not unwrap: {hint}") from exc


def _new_version_row(tenant_id: int, purpose: str, version: int) -> TenantKey:
    master = master_key()
    raw = os.urandom(KEY_BYTES)
    return TenantKey(
        tenant_id=tenant_id,
        purpose=purpose,
        version=version,
        status=TenantKey.Status.ACTIVE,
        wrapped=aead_seal(master, raw, _tenant_key_ad(tenant_id, purpose, version)),
        master_key_id=master_key_id(master),
    )


def tenant_keys_rewrap(*, tenant_id: int) -> int:
    """Re-wrap every live key of one tenant under the current master key; returns rows changed.

    Master-key rotation: set the new ``SOTTO_MASTER_KEY``, list the old one in
    ``SOTTO_PREVIOUS_MASTER_KEYS``, run ``manage.py rewrap_tenant_keys``, then drop the old key.
    Reads never fail meanwhile: each row names the master that wrapped it.
    """
    master = master_key()
    current_id = master_key_id(master)
    changed = 0
    with tenant_context(tenant_id):
        rows = TenantKey.objects.select_for_update().filter(tenant_id=tenant_id, wrapped__isnull=False).exclude(
            master_key_id=current_id
        )
        for row in rows:
            assert row.wrapped is not None  # filtered above
            raw = _unwrap_tenant_key(tenant_id, row.purpose, row.version, bytes(row.wrapped), row.master_key_id)
            row.wrapped = aead_seal(master, raw, _tenant_key_ad(tenant_id, row.purpose, row.version))
            row.master_key_id = current_id
            row.save(update_fields=["wrapped", "master_key_id"])
            changed += 1
        if changed:
            audit.record(
                tenant_id=tenant_id, actor="system", action="keys.master_rewrap", target_type="tenant_key",
                target_id=current_id, details={"rows": changed},
            )
    return changed


def tenant_keys_create(*, tenant_id: int) -> None:
    """Create the tenant's pseudonym key and first encryption key if missing (idempotent)."""
    TenantKey.objects.bulk_create(
        [_new_version_row(tenant_id, PSEUDONYM, 1), _new_version_row(tenant_id, ENC, 1)], ignore_conflicts=True
    )


@on_tenant_created
def _create_keys_for_new_tenant(tenant_id: int) -> None:
    tenant_keys_create(tenant_id=tenant_id)


def pseudonym_key(tenant_id: int) -> bytes:
    """The tenant's HMAC key for pseudonyms (cached for the life of the process)."""
    cached = _cache_get(tenant_id, PSEUDONYM, 1)
    if cached is not None:
        return cached
    for _ in range(2):
        row = (
            TenantKey.objects.filter(tenant_id=tenant_id, purpose=PSEUDONYM, status=TenantKey.Status.ACTIVE)
            .values_list("version", "wrapped", "master_key_id")
            .first()
        )
        if row is not None:
            version, wrapped, stored_id = row
            if wrapped is None:
                raise KeyringError(f"tenant {tenant_id} pseudonym key has no key material")
            key = _unwrap_tenant_key(tenant_id, PSEUDONYM, version, bytes(wrapped), stored_id)
            _cache_put(tenant_id, PSEUDONYM, 1, key)
            return key
        tenant_keys_create(tenant_id=tenant_id)
    raise KeyringError(f"tenant {tenant_id} has no pseudonym key (is the transaction scoped to it?)")


def _active_encryption_key(tenant_id: int) -> tuple[int, bytes]:
    """The active ``enc`` version and key, its row locked FOR SHARE until the transaction ends."""
    if not connection.in_atomic_block:
        raise RuntimeError("wrapping a user key needs a transaction (the version row is share-locked)")
    for _ in range(4):
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT version, wrapped, master_key_id FROM tenancy_tenantkey "
                "WHERE tenant_id = %s AND purpose = %s AND status = 'active' FOR SHARE",
                [tenant_id, ENC],
            )
            row = cursor.fetchone()
        if row is None:
            # Either a rotation flipped versions while we waited (re-read sees the new one) or
            # the tenant predates the keyring.
            if not TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC).exists():
                tenant_keys_create(tenant_id=tenant_id)
            continue
        version, wrapped, stored_id = int(row[0]), bytes(row[1]), str(row[2])
        key = _cache_get(tenant_id, ENC, version)
        if key is None:
            key = _unwrap_tenant_key(tenant_id, ENC, version, wrapped, stored_id)
            _cache_put(tenant_id, ENC, version, key)
        return version, key
    raise KeyringError(f"tenant {tenant_id} has no active encryption key")


def _encryption_key_version(tenant_id: int, version: int) -> bytes:
    cached = _cache_get(tenant_id, ENC, version)
    if cached is not None:
        return cached
    row = (
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, version=version)
        .values_list("status", "wrapped", "master_key_id")
        .first()
    )
    if row is None:
        raise KeyringError(f"tenant {tenant_id} has no encryption key v{version}")
    status, wrapped, stored_id = row
    if status == TenantKey.Status.RETIRED or wrapped is None:
        raise KeyVersionRetired(f"tenant {tenant_id} encryption key v{version} is retired")
    key = _unwrap_tenant_key(tenant_id, ENC, version, bytes(wrapped), stored_id)
    _cache_put(tenant_id, ENC, version, key)
    return key


# --- user keys ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrappedKey:
    version: int
    blob: bytes


def _user_key_ad(tenant_id: int, version: int, subject: bytes) -> bytes:
    return f"sotto/v1/user-key|{int(tenant_id)}|{int(version)}|".encode() + bytes(subject)


def user_key_new() -> bytes:
    return os.urandom(KEY_BYTES)


def user_key_wrap(*, tenant_id: int, subject: bytes, key: bytes) -> WrappedKey:
    """Wrap ``key`` for ``subject`` (the user's pseudonym) under the tenant's active encryption key."""
    version, tenant_key = _active_encryption_key(tenant_id)
    return WrappedKey(version, aead_seal(tenant_key, key, _user_key_ad(tenant_id, version, subject)))


def user_key_unwrap(*, tenant_id: int, subject: bytes, wrapped: WrappedKey) -> bytes:
    """The user's key; :class:`KeyVersionRetired` means: re-read the row and try again."""
    tenant_key = _encryption_key_version(tenant_id, wrapped.version)
    return aead_open(tenant_key, wrapped.blob, _user_key_ad(tenant_id, wrapped.version, subject))


# --- rotation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrappedRow:
    """One stored user key as a store hands it to the keyring for re-wrapping."""

    row_id: int
    subject: bytes
    key: WrappedKey


class WrappedKeyStore(Protocol):
    """Where an app keeps user keys wrapped under tenant encryption keys."""

    name: str

    def lock_wrapped(self, *, tenant_id: int, versions: Sequence[int], limit: int) -> list[WrappedRow]:
        """Up to ``limit`` rows wrapped under ``versions``, locked (FOR UPDATE SKIP LOCKED)."""

    def save_wrapped(self, *, tenant_id: int, rows: Sequence[WrappedRow]) -> None:
        """Store re-wrapped keys for rows returned by :meth:`lock_wrapped`."""

    def count_wrapped(self, *, tenant_id: int, versions: Sequence[int]) -> int:
        """How many rows are still wrapped under ``versions``."""


_stores: dict[str, WrappedKeyStore] = {}


def register_wrapped_key_store(store: WrappedKeyStore) -> None:
    _stores[store.name] = store


def tenant_key_rotate(*, tenant_id: int, actor: str, enqueue: bool = True) -> int:
    """Add a new active encryption key version; the previous one becomes ``retiring``.

    With ``enqueue`` the re-wrap task is queued (Celery, default queue) once this commits.
    Returns the new version. The pseudonym key is never rotated.
    """
    with tenant_context(tenant_id):
        rows = list(TenantKey.objects.select_for_update().filter(tenant_id=tenant_id, purpose=ENC).order_by("version"))
        if not rows:
            tenant_keys_create(tenant_id=tenant_id)
            rows = list(
                TenantKey.objects.select_for_update().filter(tenant_id=tenant_id, purpose=ENC).order_by("version")
            )
        previous = [row.version for row in rows if row.status == TenantKey.Status.ACTIVE]
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.ACTIVE).update(
            status=TenantKey.Status.RETIRING
        )
        version = max(row.version for row in rows) + 1
        _new_version_row(tenant_id, ENC, version).save(force_insert=True)
        audit.record(
            tenant_id=tenant_id, actor=actor, action="tenant_key.rotate", target_type="tenant_key",
            target_id=f"enc:v{version}", details={"new_version": version, "retiring": previous},
        )
        if enqueue:
            transaction.on_commit(lambda: _enqueue_rewrap(tenant_id))
    return version


def _enqueue_rewrap(tenant_id: int) -> None:
    from apps.tenancy.tasks import rewrap_user_keys

    rewrap_user_keys.apply_async(args=[tenant_id])


@dataclass(frozen=True)
class RewrapProgress:
    rewrapped: int
    remaining: int
    retiring: tuple[int, ...]


def _retiring_versions(tenant_id: int) -> list[int]:
    return list(
        TenantKey.objects.filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.RETIRING)
        .order_by("version")
        .values_list("version", flat=True)
    )


def rewrap_batch(*, tenant_id: int, limit: int = 500) -> RewrapProgress:
    """Re-wrap up to ``limit`` user keys (per store) from retiring versions to the active one.

    One transaction; rows another transaction holds are skipped (they come back next batch).
    """
    with tenant_context(tenant_id):
        retiring = _retiring_versions(tenant_id)
        if not retiring:
            return RewrapProgress(0, 0, ())
        active_version, active_key = _active_encryption_key(tenant_id)
        done = 0
        for store in _stores.values():
            rows = store.lock_wrapped(tenant_id=tenant_id, versions=retiring, limit=limit)
            fresh = []
            for row in rows:
                raw = user_key_unwrap(tenant_id=tenant_id, subject=row.subject, wrapped=row.key)
                blob = aead_seal(active_key, raw, _user_key_ad(tenant_id, active_version, row.subject))
                fresh.append(WrappedRow(row.row_id, row.subject, WrappedKey(active_version, blob)))
            store.save_wrapped(tenant_id=tenant_id, rows=fresh)
            done += len(fresh)
        remaining = sum(s.count_wrapped(tenant_id=tenant_id, versions=retiring) for s in _stores.values())
        return RewrapProgress(done, remaining, tuple(retiring))


def retire_drained_versions(*, tenant_id: int, actor: str = "system") -> list[int]:
    """Retire every retiring version no stored key uses any more: erase its wrapped material."""
    retired: list[int] = []
    with tenant_context(tenant_id):
        rows = list(
            TenantKey.objects.select_for_update()
            .filter(tenant_id=tenant_id, purpose=ENC, status=TenantKey.Status.RETIRING)
            .order_by("version")
        )
        for row in rows:
            if any(s.count_wrapped(tenant_id=tenant_id, versions=[row.version]) for s in _stores.values()):
                continue
            row.status = TenantKey.Status.RETIRED
            row.wrapped = None
            row.retired_at = timezone.now()
            row.save(update_fields=["status", "wrapped", "retired_at"])
            retired.append(row.version)
            audit.record(
                tenant_id=tenant_id, actor=actor, action="tenant_key.retire", target_type="tenant_key",
                target_id=f"enc:v{row.version}", details={"version": row.version},
            )
    with _cache_lock:
        for version in retired:
            _cache.pop((tenant_id, ENC, version), None)
    return retired


def rotation_complete(
    *,
    tenant_id: int,
    actor: str = "system",
    batch: int = 500,
    deadline_s: float = 1500.0,
    progress: Callable[[RewrapProgress], Any] | None = None,
) -> bool:
    """Re-wrap until no key uses a retiring version, then retire them. False if out of time."""
    started = time.monotonic()
    idle = 0
    while time.monotonic() - started < deadline_s:
        step = rewrap_batch(tenant_id=tenant_id, limit=batch)
        if progress is not None:
            progress(step)
        if step.remaining == 0:
            retire_drained_versions(tenant_id=tenant_id, actor=actor)
            with tenant_context(tenant_id):
                if not _retiring_versions(tenant_id):
                    return True
        # Rows held by other transactions are skipped; wait for them instead of spinning.
        idle = idle + 1 if step.rewrapped == 0 else 0
        if idle:
            time.sleep(min(0.05 * idle, 1.0))
    return False


@dataclass(frozen=True)
class KeyVersionInfo:
    purpose: str
    version: int
    status: str
    wrapped_user_keys: int | None


def tenant_key_versions(*, tenant_id: int) -> list[KeyVersionInfo]:
    """Every key version of the tenant with how many user keys it still wraps (enc only)."""
    with tenant_context(tenant_id):
        rows = list(TenantKey.objects.filter(tenant_id=tenant_id).order_by("purpose", "version"))
        return [
            KeyVersionInfo(
                purpose=row.purpose,
                version=row.version,
                status=row.status,
                wrapped_user_keys=(
                    sum(s.count_wrapped(tenant_id=tenant_id, versions=[row.version]) for s in _stores.values())
                    if row.purpose == ENC
                    else None
                ),
            )
            for row in rows
        ]

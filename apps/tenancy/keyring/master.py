"""The master key (parsing, the generated default file, previous keys during a master rotation) and
wrapping/unwrapping tenant keys under it; ``forget_cached_keys`` lives here because it resets the master.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import secrets
import sys
import threading
from pathlib import Path

from apps.core.conf import sotto
from apps.tenancy.keyring.cache import _cache, _cache_lock
from apps.tenancy.keyring.primitives import (
    KEY_BYTES,
    DecryptionFailed,
    KeyringError,
    aead_open,
    aead_seal,
)
from apps.tenancy.models import TenantKey

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
    return sotto().key_dir / "master.key"


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
            configured = sotto().master_key
            if configured:
                _master = parse_master_key(configured, source="SOTTO_MASTER_KEY(_FILE)")
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


def forget_cached_keys() -> None:
    """Drop every unwrapped key and the master key from this process (tests, master-key changes)."""
    global _master
    with _cache_lock:
        _cache.clear()
    with _master_lock:
        _master = None


def _tenant_key_ad(tenant_id: int, purpose: str, version: int) -> bytes:
    return f"sotto/v1/tenant-key|{int(tenant_id)}|{purpose}|{int(version)}".encode()


def previous_master_keys() -> dict[str, bytes]:
    """Retired master keys by id (``SOTTO_PREVIOUS_MASTER_KEYS``), readable during a master rotation."""
    keys = [
        parse_master_key(text, source="SOTTO_PREVIOUS_MASTER_KEYS") for text in sotto().previous_master_keys
    ]
    return {master_key_id(key): key for key in keys}


def _unwrap_tenant_key(
    tenant_id: int, purpose: str, version: int, wrapped: bytes, stored_master_id: str
) -> bytes:
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

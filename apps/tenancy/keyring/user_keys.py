"""Per-user keys: created by the owning app, wrapped under the tenant's active ``enc`` version."""

from __future__ import annotations

import os
from dataclasses import dataclass

from apps.tenancy.keyring.primitives import KEY_BYTES, aead_open, aead_seal
from apps.tenancy.keyring.tenant_keys import _active_encryption_key, _encryption_key_version


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

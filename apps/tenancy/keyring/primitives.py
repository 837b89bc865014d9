"""Key sizes, key purposes, the keyring's exceptions and the AES-256-GCM seal/open every layer uses."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from apps.tenancy.models import TenantKey

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

"""The audit signing key: kept outside the database, loaded once per process.

``SOTTO["AUDIT_SIGNING_KEY"]`` (env ``SOTTO_AUDIT_SIGNING_KEY`` or ``SOTTO_AUDIT_SIGNING_KEY_FILE``)
holds an Ed25519 private key as PKCS#8 PEM; production refuses to start without it. The embedded
default generates ``<KEY_DIR>/audit-signing.key`` (mode 0600) on first use and logs that it did,
so a developer machine works with no setup while nobody mistakes that key for a managed one.

Rotation: install the new private key and list the old *public* key(s) in
``SOTTO["AUDIT_PREVIOUS_PUBLIC_KEYS"]`` (PEM blocks, env ``SOTTO_AUDIT_PREVIOUS_PUBLIC_KEYS`` or
``_FILE``), so checkpoints signed before the rotation still verify. An unknown key id fails.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from apps.audit.chain import (
    key_fingerprint,
    key_id,
    load_or_create_private_key,
    load_private_key_pem,
    load_public_key_pem,
    public_key_to_pem,
)
from apps.core.conf import sotto

logger = logging.getLogger(__name__)

EMBEDDED_KEY_NAME = "audit-signing.key"

_lock = threading.Lock()
_cache: dict[tuple[str, str], Ed25519PrivateKey] = {}


@dataclass(frozen=True)
class PublicKeyInfo:
    """What reviewers pin: the PEM, its short key id (in every checkpoint) and full fingerprint."""

    algorithm: str
    public_key_pem: str
    key_id: str
    fingerprint: str


def embedded_key_path() -> Path:
    return sotto().key_dir / EMBEDDED_KEY_NAME


def signing_key() -> Ed25519PrivateKey:
    """The configured Ed25519 signing key, or the embedded default (created 0600 on first use)."""
    configured = sotto().audit_signing_key
    source = ("pem", configured) if configured else ("file", str(embedded_key_path()))
    with _lock:
        cached = _cache.get(source)
        if cached is not None:
            return cached
        if configured:
            # Environment variables often carry PEM with literal "\n"; accept both forms.
            pem = str(configured).strip().replace("\\n", "\n").encode("ascii")
            key = load_private_key_pem(pem)
        else:
            path = embedded_key_path()
            existed = path.exists()
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            key = load_or_create_private_key(path)
            logger.warning(
                "audit signing key: %s the embedded default %s (key id %s); "
                "set SOTTO_AUDIT_SIGNING_KEY or SOTTO_AUDIT_SIGNING_KEY_FILE to a managed Ed25519 key in production",
                "loaded" if existed else "generated",
                path,
                key_id(key.public_key()),
            )
        _cache[source] = key
        return key


_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


def trusted_public_keys() -> dict[str, Ed25519PublicKey]:
    """Public keys that checkpoints may be signed with, by key id: the current one and any previous."""
    current = signing_key().public_key()
    keys = {key_id(current): current}
    previous = sotto().audit_previous_public_keys or ""
    for block in _PEM_BLOCK.findall(str(previous).replace("\\n", "\n")):
        key = load_public_key_pem(block.encode("ascii"))
        keys.setdefault(key_id(key), key)
    return keys


def public_key_info() -> PublicKeyInfo:
    public = signing_key().public_key()
    return PublicKeyInfo(
        algorithm="ed25519",
        public_key_pem=public_key_to_pem(public).decode("ascii"),
        key_id=key_id(public),
        fingerprint=key_fingerprint(public),
    )

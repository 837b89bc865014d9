"""Sealing one profile attribute under its user's key (AES-256-GCM, ``cryptography`` AESGCM).

Two subkeys are derived from the user key with HKDF-SHA256: one encrypts, one tags names.

- ``name_tag`` = HMAC-SHA256(name subkey, attribute name): stored instead of the name, so equal
  names are not linkable across users and nothing about them survives the user key.
- ciphertext = AESGCM(enc subkey) over compact JSON ``{"n": name, "v": value}`` with a random
  96-bit nonce and associated data ``tenant id | pseudonym | name_tag``: a ciphertext moved to
  another row (user), field (name) or tenant does not decrypt.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apps.tenancy.keyring import DecryptionFailed, aead_open, aead_seal

AttributeValue = str | int | float | bool


def _derive(user_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sotto/v1/" + label).derive(user_key)


class AttributeSealer:
    """Seals and opens the attributes of one user (derive the subkeys once per request)."""

    def __init__(self, *, tenant_id: int, pseudonym: bytes, user_key: bytes) -> None:
        self._tenant_id = int(tenant_id)
        self._pseudonym = bytes(pseudonym)
        self._enc_key = _derive(user_key, b"attribute-encryption")
        self._name_key = _derive(user_key, b"attribute-name")

    def name_tag(self, name: str) -> bytes:
        return hmac.digest(self._name_key, name.encode("utf-8"), "sha256")

    def _ad(self, name_tag: bytes) -> bytes:
        return f"sotto/v1/attribute|{self._tenant_id}|".encode() + self._pseudonym + b"|" + bytes(name_tag)

    def seal(self, name: str, value: AttributeValue) -> tuple[bytes, bytes]:
        """``(name_tag, ciphertext)`` for one attribute."""
        tag = self.name_tag(name)
        plaintext = json.dumps({"n": name, "v": value}, ensure_ascii=False, separators=(",", ":"))
        return tag, aead_seal(self._enc_key, plaintext.encode("utf-8"), self._ad(tag))

    def open(self, name_tag: bytes, ciphertext: bytes) -> tuple[str, Any]:
        """``(name, value)``; :class:`DecryptionFailed` if the blob was moved, altered or is another key's."""
        plaintext = aead_open(self._enc_key, ciphertext, self._ad(name_tag))
        doc = json.loads(plaintext.decode("utf-8"))
        name, value = doc["n"], doc["v"]
        if not hmac.compare_digest(self.name_tag(name), bytes(name_tag)):
            raise DecryptionFailed("attribute name does not match its tag")
        return name, value

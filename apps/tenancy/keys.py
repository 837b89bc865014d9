"""API key format and hashing: ``sotto_<prefix>_<secret>``; the prefix finds the row, the hash proves it."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

_KEY_RE = re.compile(r"^sotto_([a-z0-9]{10})_([A-Za-z0-9_-]{32,64})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    raw: str


def generate() -> tuple[str, str]:
    """Return (raw key, prefix). 256 bits of secret, so a fast hash at rest is safe."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    return f"sotto_{prefix}_{secrets.token_urlsafe(32)}", prefix


def parse(raw: str) -> ParsedKey | None:
    match = _KEY_RE.match(raw)
    return ParsedKey(prefix=match.group(1), raw=raw) if match else None


def digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(digest(raw), stored_hash)

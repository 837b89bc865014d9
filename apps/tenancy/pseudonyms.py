"""Pseudonyms: a client's identifier, as stored, is HMAC-SHA256 under the tenant's pseudonym key.

The raw identifier is never written anywhere (database, logs, Celery messages); it is turned into a
32-byte pseudonym at the API boundary. The same identifier always maps to the same pseudonym
within one tenant (so events find their user) and to unrelated pseudonyms across tenants. The
pseudonym key is separate from the encryption keys and is never rotated (rotating it would orphan
every stored pseudonym, and the raw identifiers needed to recompute them are, by design, gone).

Each kind of identifier gets its own domain label, so a user id and an event id with the same
text never collide. Call inside a transaction scoped to the tenant (the key is read once per
process, then cached).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable

from apps.tenancy.keyring import pseudonym_key

USER = "user"
EVENT = "event"
PSEUDONYM_BYTES = 32
MAX_REF_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidReference(ValueError):
    """An identifier a client sent cannot be used (the message never repeats the value)."""


def normalise_ref(value: object, *, max_length: int = MAX_REF_LENGTH) -> str:
    """A client identifier as text: a non-empty string, or an integer (``42`` and ``"42"`` are the same).

    Rejects booleans, floats, empty or blank strings, control characters, lone surrogates and
    overlong values.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidReference("must be a string (or an integer)")
    text = str(value)
    if not text.strip():
        raise InvalidReference("must not be empty")
    if len(text) > max_length:
        raise InvalidReference(f"must be at most {max_length} characters")
    if _CONTROL.search(text):
        raise InvalidReference("must not contain control characters")
    if not is_valid_text(text):
        raise InvalidReference("must be valid Unicode (no unpaired surrogates)")
    return text


def is_valid_text(text: str) -> bool:
    """False for strings UTF-8 cannot encode (JSON can smuggle in lone surrogates like "\\ud800")."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _message(domain: str, value: str) -> bytes:
    # Domain labels are fixed ASCII without NUL, so this encoding is injective.
    return b"sotto/v1/" + domain.encode("ascii") + b"\x00" + value.encode("utf-8")


def keyed_tag(*, tenant_id: int, domain: str, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` under the tenant's pseudonym key, labelled with ``domain``."""
    return hmac.digest(pseudonym_key(tenant_id), _message(domain, value), "sha256")


def pseudonymise(*, tenant_id: int, user_ref: str) -> bytes:
    """The stored form of a client's user id (32 bytes)."""
    return keyed_tag(tenant_id=tenant_id, domain=USER, value=user_ref)


def pseudonymise_many(*, tenant_id: int, user_refs: Iterable[str]) -> dict[str, bytes]:
    key = pseudonym_key(tenant_id)
    return {ref: hmac.digest(key, _message(USER, ref), "sha256") for ref in set(user_refs)}


def event_keys(*, tenant_id: int, event_ids: Iterable[str]) -> dict[str, bytes]:
    """Stored form of client event ids: they are free text and may embed user ids, so they are keyed too."""
    key = pseudonym_key(tenant_id)
    return {eid: hmac.digest(key, _message(EVENT, eid), "sha256") for eid in set(event_ids)}

"""Query-string parameters of the serving endpoints: every bad value is a 400 naming the parameter.

Nothing a client sends can reach the database unchecked: NUL and other control characters (which
PostgreSQL refuses in text, a 500 waiting to happen) are rejected here.
"""

from __future__ import annotations

import math
import re

from apps.core.errors import DomainError
from apps.tenancy.pseudonyms import InvalidReference, is_valid_text, normalise_ref

MAX_K = 100
DEFAULT_K = 10
MAX_QUERY = 512
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_QUERY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and line breaks read as spaces
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def parse_k(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_K
    try:
        k = int(raw)
    except ValueError:
        raise DomainError(f"k must be an integer from 1 to {MAX_K}", details={"k": raw[:50]}) from None
    if not 1 <= k <= MAX_K:
        raise DomainError(f"k must be from 1 to {MAX_K}, got {k}", details={"k": raw[:50]})
    return k


def parse_bool(name: str, raw: str | None, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise DomainError(f"{name} must be true or false", details={name: raw[:50]})


def parse_diversity(raw: str | None) -> float:
    if raw is None or raw == "":
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise DomainError("diversity must be a number from 0 to 1", details={"diversity": raw[:50]}) from None
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise DomainError(f"diversity must be from 0 to 1, got {raw[:50]}", details={"diversity": raw[:50]})
    return value


def parse_user(raw: str | None, *, required: bool) -> str | None:
    if raw is None or raw == "":
        if required:
            raise DomainError("user is required (the client's own user id)", details={"user": "is required"})
        return None
    try:
        return normalise_ref(raw)
    except InvalidReference as exc:
        raise DomainError(f"user id {exc}", details={"user": str(exc)}) from None


def parse_category(raw: str | None) -> str | None:
    """A category filter; one no item has gives an empty list, not an error."""
    if raw is None or raw == "":
        return None
    if _CONTROL.search(raw) or not is_valid_text(raw):
        raise DomainError("category must be text without control characters", details={"category": "invalid"})
    return raw


def parse_query(raw: str | None) -> str:
    if raw is None or not raw.strip():
        raise DomainError("q is required: the search text", details={"q": "is required"})
    if len(raw) > MAX_QUERY:
        raise DomainError(
            f"q must be at most {MAX_QUERY} characters, got {len(raw)}", details={"q": "too long"}
        )
    if _QUERY_CONTROL.search(raw) or not is_valid_text(raw):
        raise DomainError("q must be text without control characters", details={"q": "invalid"})
    return " ".join(raw.split())

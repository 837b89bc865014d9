"""Item payload rules, shared by the items API and the file importers (pure Python, no database).

Limits (also in docs/catalog.md): at most ``MAX_BATCH`` items per request; ``id`` 1-200
characters (a string, or an integer which is turned into its decimal string); ``title`` 1-500
characters; ``description`` up to 20,000 characters; up to 50 ``categories`` of 1-100 characters
each; ``attributes`` a flat JSON object (string keys up to 100 characters, values string, number,
boolean or null) of at most 16 KiB; ``available`` a boolean. No NUL characters and no unpaired
surrogates (text UTF-8 cannot encode, which PostgreSQL refuses) anywhere. The same rules hold for
an item id in a URL and a category filter (``parse_id_param``, ``parse_category_param``).
The encoder reads ``title. categories. description`` and keeps only its first 256 tokens (about
1,000 characters of English); the item response says ``"truncated": true`` when it cut.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from apps.core.errors import DomainError, PayloadTooLarge

MAX_BATCH = 1000
MAX_ID = 200
MAX_TITLE = 500
MAX_DESCRIPTION = 20_000
MAX_CATEGORIES = 50
MAX_CATEGORY = 100
MAX_ATTRIBUTE_KEY = 100
MAX_ATTRIBUTES_BYTES = 16 * 1024
FIELDS = ("id", "title", "description", "categories", "attributes", "available")


@dataclass(frozen=True)
class ItemInput:
    """One validated item; ``content_text`` is exactly what the encoder reads."""

    external_id: str
    title: str
    description: str
    categories: tuple[str, ...]
    attributes: dict[str, Any]
    available: bool

    @property
    def content_text(self) -> str:
        return content_text(self.title, self.categories, self.description)

    @property
    def content_hash(self) -> str:
        return content_hash(self.content_text)


def content_text(title: str, categories: Sequence[str], description: str) -> str:
    parts = [title]
    if categories:
        parts.append(", ".join(categories))
    if description:
        parts.append(description)
    return ". ".join(parts)


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class ItemInputError(ValueError):
    """The item is invalid; ``errors`` maps each bad field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def _text(value: Any, field: str, errors: dict[str, str], *, limit: int, required: bool) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        errors[field] = f"must be a string, got {_kind(value)}"
        return ""
    text: str = value.strip()
    if required and not text:
        errors[field] = "is required and may not be blank"
    elif len(text) > limit:
        errors[field] = f"is {len(text)} characters long; the limit is {limit}"
    elif "\x00" in text:
        errors[field] = "may not contain NUL characters"
    elif not _is_text(text):
        errors[field] = "must be valid Unicode (no unpaired surrogates)"
    return text


def _is_text(value: str) -> bool:
    """No NUL and valid Unicode: what PostgreSQL text stores (JSON can smuggle in lone surrogates like "\\ud800")."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _external_id(value: Any, errors: dict[str, str]) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if value is None:
        errors["id"] = "is required"
        return ""
    return _text(value, "id", errors, limit=MAX_ID, required=True)


def _categories(value: Any, errors: dict[str, str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        errors["categories"] = f"must be a list of strings, got {_kind(value)}"
        return ()
    if len(value) > MAX_CATEGORIES:
        errors["categories"] = f"has {len(value)} entries; the limit is {MAX_CATEGORIES}"
        return ()
    out: list[str] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, str):
            errors["categories"] = f"entry {i} must be a string, got {_kind(entry)}"
            return ()
        entry = entry.strip()
        if not entry or len(entry) > MAX_CATEGORY or not _is_text(entry):
            errors["categories"] = (
                f"entry {i} must be 1-{MAX_CATEGORY} characters without NUL or unpaired surrogates"
            )
            return ()
        if entry not in out:
            out.append(entry)
    return tuple(out)


def _attributes(value: Any, errors: dict[str, str]) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors["attributes"] = f"must be a flat JSON object, got {_kind(value)}"
        return {}
    for key, entry in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_ATTRIBUTE_KEY or not _is_text(key):
            errors["attributes"] = (
                f"keys must be 1-{MAX_ATTRIBUTE_KEY} character strings without NUL or unpaired surrogates"
            )
            return {}
        if isinstance(entry, dict | list):
            errors["attributes"] = f"must be flat: {key!r} holds {_kind(entry)}"
            return {}
        if isinstance(entry, float) and not math.isfinite(entry):
            errors["attributes"] = f"{key!r} is not a finite number"
            return {}
        if isinstance(entry, str) and not _is_text(entry):
            errors["attributes"] = f"{key!r} contains a NUL character or an unpaired surrogate"
            return {}
        if not isinstance(entry, str | int | float | bool) and entry is not None:
            errors["attributes"] = f"{key!r} holds {_kind(entry)}; use a string, number, boolean or null"
            return {}
    size = len(json.dumps(dict(value), ensure_ascii=False).encode("utf-8"))
    if size > MAX_ATTRIBUTES_BYTES:
        errors["attributes"] = f"is {size} bytes as JSON; the limit is {MAX_ATTRIBUTES_BYTES}"
        return {}
    return dict(value)


def parse_item(raw: Any) -> ItemInput:
    """Validate one item object; raise ``ItemInputError`` naming every bad field."""
    if not isinstance(raw, Mapping):
        raise ItemInputError({"item": f"must be an object, got {_kind(raw)}"})
    errors: dict[str, str] = {}
    unknown = sorted(str(k) for k in raw if k not in FIELDS)
    if unknown:
        errors["item"] = f"unknown fields {unknown}; allowed: {list(FIELDS)}"
    external_id = _external_id(raw.get("id"), errors)
    title = _text(raw.get("title"), "title", errors, limit=MAX_TITLE, required=True)
    description = _text(raw.get("description"), "description", errors, limit=MAX_DESCRIPTION, required=False)
    categories = _categories(raw.get("categories"), errors)
    attributes = _attributes(raw.get("attributes"), errors)
    available = raw.get("available", True)
    if available is None:
        available = True
    if not isinstance(available, bool):
        errors["available"] = f"must be true or false, got {_kind(available)}"
    if errors:
        raise ItemInputError(errors)
    return ItemInput(
        external_id=external_id,
        title=title,
        description=description,
        categories=categories,
        attributes=attributes,
        available=bool(available),
    )


def parse_items(raw_items: Any) -> list[ItemInput]:
    """Validate a whole batch before anything is written; raise one ``DomainError`` listing every problem.

    More than ``MAX_BATCH`` items raise ``PayloadTooLarge`` (413); an id sent twice is an error.
    """
    if not isinstance(raw_items, list):
        raise DomainError(
            'expected {"items": [...]} with a list of items', details={"items": "must be a list"}
        )
    if not raw_items:
        raise DomainError("the items list is empty", details={"items": "must hold 1 to 1000 items"})
    if len(raw_items) > MAX_BATCH:
        raise PayloadTooLarge(
            f"{len(raw_items)} items in one request; the limit is {MAX_BATCH}: split the batch",
            details={"limit": MAX_BATCH, "received": len(raw_items)},
        )
    problems: list[dict[str, Any]] = []
    parsed: list[ItemInput] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(raw_items):
        try:
            item = parse_item(raw)
        except ItemInputError as exc:
            raw_id = raw.get("id") if isinstance(raw, Mapping) else None
            problems.append(
                {
                    "index": index,
                    "id": raw_id if isinstance(raw_id, str | int) else None,
                    "errors": exc.errors,
                }
            )
            continue
        if item.external_id in first_index:
            problems.append(
                {
                    "index": index,
                    "id": item.external_id,
                    "errors": {"id": f"duplicates item {first_index[item.external_id]} of this batch"},
                }
            )
            continue
        first_index[item.external_id] = index
        parsed.append(item)
    if problems:
        head = "; ".join(
            f"item {p['index']}"
            + (f" (id {p['id']!r})" if p["id"] is not None else "")
            + ": "
            + "; ".join(f"{k} {v}" for k, v in p["errors"].items())
            for p in problems[:3]
        )
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise DomainError(
            f"{len(problems)} of {len(raw_items)} items are invalid; nothing was written: {head}{more}",
            details={"items": problems},
        )
    return parsed


def parse_id_param(raw: str) -> str:
    """An item id from a URL (``/items/{id}``): NUL would be a 500 from PostgreSQL, so it is a 400."""
    if not _is_text(raw):
        raise DomainError("the item id must not contain NUL characters", details={"id": "contains NUL"})
    return raw


def parse_category_param(raw: str | None) -> str | None:
    """A ``category`` query filter (None when absent or empty); an unknown category is not an error."""
    if not raw:
        return None
    if not _is_text(raw):
        raise DomainError("category must not contain NUL characters", details={"category": "contains NUL"})
    return raw

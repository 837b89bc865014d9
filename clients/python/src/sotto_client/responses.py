"""Typed shapes of the requests and answers the client handles most (docs/api.md is the reference).

Answers are plain ``dict``s decoded from JSON; these ``TypedDict``s only tell a type checker
which keys to expect. Less common answers (training runs, budget, exports) are ``Json``: their
fields are documented in docs/api.md and grow over time.
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

Json = dict[str, Any]


class ItemInput(TypedDict):
    """One catalogue item to create or update by your own ``id``."""

    id: str
    title: str
    description: NotRequired[str]
    categories: NotRequired[list[str]]
    attributes: NotRequired[dict[str, Any]]
    available: NotRequired[bool]


class EventInput(TypedDict):
    """One interaction. ``event_id`` is the idempotency key: the client fills one in when missing."""

    user: str | int
    item: str
    type: str  # view, click, cart, purchase, rating
    event_id: NotRequired[str]
    value: NotRequired[float]
    timestamp: NotRequired[str | int | float]  # ISO 8601 with an offset, or Unix seconds


class UpsertResult(TypedDict):
    received: int
    created: int
    updated: int
    unchanged: int
    queued_for_encoding: int


class IngestResult(TypedDict):
    accepted: int
    new: int
    duplicates: int
    pending: int


class ScoredItem(TypedDict):
    id: str
    score: float


class Recommendations(TypedDict):
    user: str
    items: list[ScoredItem]
    model_version: int | None
    strategy: str  # personal, content, popular, newest
    note: str | None
    request_id: str | None


class SearchResults(TypedDict):
    query: str
    user: str | None
    items: list[ScoredItem]
    personalised: bool
    user_weight: float
    note: str | None
    request_id: str | None


class SimilarItems(TypedDict):
    id: str
    k: int
    items: list[ScoredItem]


class CatalogStatus(TypedDict):
    items: int
    pending: int
    ready: int
    failed: int
    truncated: int

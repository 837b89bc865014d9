"""Endpoint classes an objective is set for, derived from the URL and method alone (no DB, no resolver).

>>> endpoint_class("GET", "/api/v1/recommendations")
'recommend'
>>> endpoint_class("PUT", "/api/v1/users/u-42")
'ingest'
>>> endpoint_class("GET", "/api/v1/users/u-42")
'other'
"""

from __future__ import annotations

RECOMMEND = "recommend"
SEARCH = "search"
INGEST = "ingest"
OTHER = "other"
CLASSES: tuple[str, ...] = (RECOMMEND, SEARCH, INGEST, OTHER)

_PREFIX = "/api/v1/"


def endpoint_class(method: str, path: str) -> str:
    """Classify a request: recommend, search, ingest (writes of items, events, user attributes), other.

    ``GET /api/v1/items/{id}/similar`` is a serving query on the same HNSW index as
    recommendations, so it counts as ``recommend``.
    """
    if not path.startswith(_PREFIX):
        return OTHER
    head, _, tail = path[len(_PREFIX):].partition("/")
    tail = tail.strip("/")
    if head == "recommendations":
        return RECOMMEND
    if head == "search":
        return SEARCH
    if head == "events":
        return INGEST if method == "POST" and not tail else OTHER
    if head == "items":
        if not tail:
            return INGEST if method == "POST" else OTHER
        return RECOMMEND if tail.endswith("/similar") else OTHER
    if head == "users" and tail and "/" not in tail and method == "PUT":
        return INGEST
    return OTHER


def status_class(status: int) -> str:
    """Coarse status label kept with each histogram: 2xx, 3xx, 4xx, 429 (throttled) or 5xx."""
    if status >= 500:
        return "5xx"
    if status == 429:
        return "429"
    if status >= 400:
        return "4xx"
    if status >= 300:
        return "3xx"
    return "2xx"


STATUS_CLASSES: tuple[str, ...] = ("2xx", "3xx", "4xx", "429", "5xx")

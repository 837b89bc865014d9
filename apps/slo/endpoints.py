"""Endpoint classes an objective is set for, derived from the URL and method alone (no DB, no resolver).

>>> endpoint_class("GET", "/api/v1/recommendations")
'recommend'
>>> endpoint_class("PUT", "/api/v1/users/u-42")
'ingest'
>>> endpoint_class("GET", "/api/v1/users/u-42")
'other'
>>> endpoint_class("POST", "/api/v1/events", batch_size=1000)
'ingest_batch'

The two batch endpoints (``POST /api/v1/events`` and ``POST /api/v1/items``, up to 1000 records a
request) are judged by size class: a request of more than ``SLO_INGEST_SMALL_MAX`` records (100)
is ``ingest_batch``, with an objective of its own, so a 1000-record backfill is not held to the
latency of a single event, and a handful of events is not excused by the allowance a 1000-record
batch needs. Size classes, not a per-record allowance, because a threshold that varied with each
request could not be read back from the shared latency histograms (docs/slo.md, "Batch endpoints").
"""

from __future__ import annotations

RECOMMEND = "recommend"
SEARCH = "search"
INGEST = "ingest"
INGEST_BATCH = "ingest_batch"
OTHER = "other"
CLASSES: tuple[str, ...] = (RECOMMEND, SEARCH, INGEST, INGEST_BATCH, OTHER)

# The default boundary between ``ingest`` and ``ingest_batch`` (``SOTTO["SLO_INGEST_SMALL_MAX"]``).
INGEST_SMALL_MAX = 100

_PREFIX = "/api/v1/"


def batch_key(method: str, path: str) -> str | None:
    """The body field holding the records when the request is a batch write (``"events"`` or
    ``"items"``), else None: the middleware looks for a batch size only where this says so."""
    if method != "POST" or not path.startswith(_PREFIX):
        return None
    head, _, tail = path[len(_PREFIX) :].partition("/")
    return head if head in ("events", "items") and not tail.strip("/") else None


def endpoint_class(
    method: str, path: str, *, batch_size: int | None = None, small_max: int = INGEST_SMALL_MAX
) -> str:
    """Classify a request: recommend, search, ingest (writes of items, events, user attributes),
    ingest_batch (a batch write of more than ``small_max`` records), other.

    ``GET /api/v1/items/{id}/similar`` is a serving query on the same HNSW index as
    recommendations, so it counts as ``recommend``. A batch write whose size is unknown (its body
    was never parsed: malformed JSON, a body over the upload limit) counts as ``ingest``.
    """
    if not path.startswith(_PREFIX):
        return OTHER
    head, _, tail = path[len(_PREFIX) :].partition("/")
    tail = tail.strip("/")
    if head == "recommendations":
        return RECOMMEND
    if head == "search":
        return SEARCH
    if head in ("events", "items") and not tail:
        if method != "POST":
            return OTHER
        return INGEST_BATCH if batch_size is not None and batch_size > small_max else INGEST
    if head == "items":
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

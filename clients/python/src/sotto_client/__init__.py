"""Sotto's Python client: ``SottoClient(base_url, api_key)`` and the ``SottoError`` it raises.

>>> from sotto_client import SottoClient
>>> client = SottoClient("http://127.0.0.1:8000", "sotto_...")  # doctest: +SKIP
>>> client.recommendations("user-1", k=5)["items"]  # doctest: +SKIP
"""

from sotto_client.client import SottoClient, __version__
from sotto_client.errors import RETRYABLE_STATUSES, SottoConnectionError, SottoError
from sotto_client.responses import (
    CatalogStatus,
    EventInput,
    IngestResult,
    ItemInput,
    Json,
    Recommendations,
    ScoredItem,
    SearchResults,
    SimilarItems,
    UpsertResult,
)

__all__ = [
    "RETRYABLE_STATUSES",
    "CatalogStatus",
    "EventInput",
    "IngestResult",
    "ItemInput",
    "Json",
    "Recommendations",
    "ScoredItem",
    "SearchResults",
    "SimilarItems",
    "SottoClient",
    "SottoConnectionError",
    "SottoError",
    "UpsertResult",
    "__version__",
]

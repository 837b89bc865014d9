"""Real-time recommendations and search: the serving path behind ``/api/v1/recommendations`` and ``/search``.

What callers may rely on:

- **Strategies.** ``personal`` when the tenant has a live trained model: the user tower (numpy, no
  torch) turns the user's real-time state into an interest vector, ranked by cosine against the
  item vectors materialised for exactly that model version. ``content`` before the first trained
  model: the user's rating-weighted mean of history content vectors against the content vectors.
  ``model_version`` is set only for ``personal``.
- **Cold start never answers an empty list while items pass the filters.** An unknown user, one
  with no folded event yet, or one whose ``personal``/``content`` ranking found nothing, gets the
  fallback chain, which spends no privacy budget (a release is never made implicitly):
  ``popular``, the latest DP popularity release, topped up when it has fewer than k items passing
  the filters with the newest catalogue items (``apps.serving.newest``, score 0, no duplicates,
  with a ``note``); ``newest``, only the newest catalogue items, when the release gives nothing
  (or there is none; the ``note`` says so). A list that is still empty keeps the strategy the
  user's state selected, with a ``note``.
- **One model per answer.** The live model is read once per request and every later step uses
  that object and its version, so a swap to a new version mid-request cannot mix versions.
- **Real time.** The user's state and seen items are read fresh on every request (one query), so
  an event committed before the request is reflected: a seen item disappears under
  ``exclude_seen`` and the user vector moves.
- **Rules.** Availability always; ``exclude_seen`` drops every item the user has an event for;
  ``category`` keeps items of that category (one no item has gives an empty list). The filters run
  inside the tenant's HNSW scan (pgvector 0.8 iterative scans), so they never starve the result.
- **Diversity.** ``diversity`` d in [0, 1] re-orders a larger candidate pool (``pool_size``) by
  maximal marginal relevance over the items' content vectors; ``score`` stays each item's
  relevance, so with d > 0 the list is no longer sorted by score.
- **Search.** The query is encoded in process by the catalogue's encoder and ranked by cosine over
  content vectors. With a known user the score is ``(1-a)·cos(q, item) + a·cos(u, item)``, u the
  user's content-space interest and a = ``SERVING_SEARCH_USER_WEIGHT`` (0.3): exactly a cosine
  top-k on ``(1-a)·q + a·u`` (see ``ranking.blend_vector``), so the whole catalogue is re-ranked
  by the blend in one index scan.
- **Round trips.** Inside a request (the ``TenantAPIView`` transaction, already scoped to the
  tenant) the path joins that transaction, with raw SQL only (no ORM): one read of the user's state
  and seen items, then the HNSW knobs and the scan pipelined in one round trip
  (``apps.core.hnsw``; the query vector in pgvector's binary form), plus one vector read when d > 0;
  with BEGIN and the RLS tenant (one pipelined round trip, ``apps.core.tenant_db``) and COMMIT that
  is 6 statements in 4 round trips (7 in 5 with diversity). A cold-start top-up or fallback adds one statement per step tried (popularity,
  newest). The model pointer is cached per process (``MODELING_POINTER_TTL_S``) and the weights
  per process and version, the API key too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from apps.catalog.encoder import EncoderConfigError
from apps.catalog.vectors import vectors_fetch
from apps.core.conf import sotto
from apps.core.errors import DomainError, ErrorCode
from apps.core.hnsw import Neighbour
from apps.core.tenant_db import tenant_scope
from apps.profiles.selectors import user_state, user_state_and_seen
from apps.serving import model_access
from apps.serving.hnsw import content_knn
from apps.serving.newest import newest_items
from apps.serving.query_encoding import mostly_cjk, query_vector
from apps.serving.ranking import blend_vector, content_interest, mmr_order

PERSONAL = "personal"
CONTENT = "content"
POPULAR = "popular"
NEWEST = "newest"

MAX_POOL = 200
NO_RELEASE_NOTE = (
    "no DP popularity release yet: these are the catalogue's newest items until the tenant's first "
    "training run (or popularity release)"
)
NO_POPULAR_MATCH_NOTE = (
    "no popular item passes the filters (or there is no DP popularity release yet): these are the "
    "catalogue's newest items"
)
TOPPED_UP_NOTE = (
    "fewer than k popular items pass the filters: the rest are the catalogue's newest items (score 0)"
)
EMPTY_NOTE = "no available item passes the filters"
CJK_NOTE = (
    "the search encoder is English-trained: most CJK characters are unknown to it, so results for "
    "this query are unreliable (mixed queries work through their English words)"
)


@dataclass(frozen=True)
class Ranked:
    items: list[dict[str, Any]]
    strategy: str
    model_version: int | None = None
    note: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def pool_size(k: int, diversity: float) -> int:
    """Candidates fetched for ``k`` results: ``k`` itself, or up to 3k (at most 200) for MMR.

    >>> pool_size(10, 0.0), pool_size(10, 0.5), pool_size(100, 0.5)
    (10, 30, 200)
    """
    if diversity <= 0.0:
        return k
    return max(k, min(max(3 * k, k + 20), MAX_POOL))


def _items(found: Sequence[Neighbour], scale: float = 1.0) -> list[dict[str, Any]]:
    return [{"id": ext, "score": round(scale * float(score), 6)} for _, ext, score in found]


def _diversify(tenant_id: int, found: list[Neighbour], k: int, diversity: float) -> list[Neighbour]:
    if diversity <= 0.0 or len(found) <= 1:
        return found[:k]
    vectors = vectors_fetch(tenant_id=tenant_id, item_pks=[pk for pk, _, _ in found])
    dim = next(iter(vectors.values())).shape[0] if vectors else 1
    zero = np.zeros(dim, dtype=np.float32)  # an item without a content vector is "unlike everything"
    matrix = np.stack([vectors.get(pk, zero) for pk, _, _ in found])
    order = mmr_order([score for _, _, score in found], matrix, k, diversity)
    return [found[i] for i in order]


def _cold_start(
    *, tenant_id: int, k: int, pool: int, exclude: set[int], category: str | None
) -> tuple[list[Neighbour], str | None, str | None]:
    """``(candidates, strategy, note)`` without a usable personal ranking, at no privacy cost.

    The DP popularity release is post-processing of a release already paid for; the newest items
    are the tenant's own public catalogue. Topped up only when popularity has fewer than k items,
    so a tenant with a full release pays no extra statement. ``strategy`` is None when nothing passes.
    """
    found = model_access.popular(tenant_id=tenant_id, k=pool, exclude_pks=exclude, category=category)
    if len(found) >= k:
        return found, POPULAR, None
    newest = newest_items(
        tenant_id=tenant_id,
        k=pool - len(found),
        exclude_pks=exclude | {pk for pk, _, _ in found},
        category=category,
    )
    if found:
        return found + newest, POPULAR, TOPPED_UP_NOTE if newest else None
    if newest:
        return newest, NEWEST, NO_RELEASE_NOTE if category is None and not exclude else NO_POPULAR_MATCH_NOTE
    return [], None, EMPTY_NOTE


def recommendations_for_user(
    *,
    tenant_id: int,
    user_ref: str,
    k: int,
    category: str | None = None,
    exclude_seen: bool = True,
    diversity: float = 0.0,
) -> Ranked:
    """Top-k items for one end user (see the module docstring for strategies, fallbacks and rules)."""
    pool = pool_size(k, diversity)
    with tenant_scope(tenant_id):
        state, seen = user_state_and_seen(tenant_id, user_ref)
        exclude = seen if exclude_seen else set()
        found: list[Neighbour] = []
        strategy, version, note = POPULAR, None, None
        if state is not None:
            model = model_access.active_model(tenant_id)
            if model is not None:
                vector = model_access.interest(model, state)
                found = model_access.personal_knn(
                    tenant_id=tenant_id,
                    model=model,
                    vector=vector,
                    k=pool,
                    exclude_pks=exclude,
                    category=category,
                )
                strategy, version = PERSONAL, model_access.model_version(model)
            else:
                interest = content_interest(state)
                if interest is not None:
                    found = content_knn(
                        tenant_id=tenant_id, vector=interest, k=pool, exclude_pks=exclude, category=category
                    )
                    strategy = CONTENT
        if not found:
            found, fallback, note = _cold_start(
                tenant_id=tenant_id, k=k, pool=pool, exclude=exclude, category=category
            )
            if fallback is not None:
                strategy, version = fallback, None
        ranked = _diversify(tenant_id, found, k, diversity)
    return Ranked(items=_items(ranked), strategy=strategy, model_version=version, note=note)


def search_user_weight() -> float:
    return min(1.0, max(0.0, sotto().serving_search_user_weight))


def search_items(*, tenant_id: int, query: str, k: int, user_ref: str | None = None) -> Ranked:
    """Items by cosine to the encoded query, blended with the user's interest when ``user_ref`` is known."""
    try:
        q = query_vector(tenant_id, query)
    except EncoderConfigError as exc:
        raise DomainError(
            f"search is unavailable: {exc}", code=ErrorCode.SEARCH_UNAVAILABLE, status=503
        ) from None
    with tenant_scope(tenant_id):
        user = content_interest(user_state(tenant_id, user_ref)) if user_ref is not None else None
        alpha = search_user_weight() if user is not None else 0.0
        vector, scale = blend_vector(q, user, alpha)
        found = content_knn(tenant_id=tenant_id, vector=vector, k=k)
    return Ranked(
        items=_items(found, scale),
        strategy="search",
        note=CJK_NOTE if mostly_cjk(query) else None,
        extra={"personalised": user is not None, "user_weight": alpha},
    )

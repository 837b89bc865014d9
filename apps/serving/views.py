"""``/api/v1/recommendations`` and ``/api/v1/search`` (scope serve): parse, call the selector, render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.api.schema import errors
from apps.serving import params, selectors, serializers


def _request_id(request: Request) -> str | None:
    return getattr(request._request, "request_id", None)


class RecommendationsView(TenantAPIView):
    """Top-k items for one end user, in real time."""

    scope = "serve"

    @extend_schema(
        summary="Recommendations for a user (personal, content, popular or newest strategy)",
        parameters=[
            OpenApiParameter("user", str, required=True, description="the client's own user id"),
            OpenApiParameter("k", int, description=f"1-{params.MAX_K} (default {params.DEFAULT_K})"),
            OpenApiParameter("category", str, description="only items of this category"),
            OpenApiParameter(
                "exclude_seen", bool, description="drop items the user has an event for (default true)"
            ),
            OpenApiParameter(
                "diversity", float, description="0-1: maximal marginal relevance weight (default 0)"
            ),
        ],
        responses={200: serializers.RecommendationsOutSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        user = params.parse_user(query.get("user"), required=True)
        assert user is not None
        ranked = selectors.recommendations_for_user(
            tenant_id=self.tenant_id,
            user_ref=user,
            k=params.parse_k(query.get("k")),
            category=params.parse_category(query.get("category")),
            exclude_seen=params.parse_bool("exclude_seen", query.get("exclude_seen"), default=True),
            diversity=params.parse_diversity(query.get("diversity")),
        )
        return Response(
            {
                "user": user,
                "items": ranked.items,
                "model_version": ranked.model_version,
                "strategy": ranked.strategy,
                "note": ranked.note,
                "request_id": _request_id(request),
            }
        )


class SearchView(TenantAPIView):
    """Items matching a text query, personalised when a user is given."""

    scope = "serve"

    @extend_schema(
        summary="Search items by text (Chinese, English or mixed), optionally personalised",
        parameters=[
            OpenApiParameter(
                "q", str, required=True, description=f"the query, 1-{params.MAX_QUERY} characters"
            ),
            OpenApiParameter(
                "user", str, description="blend in this user's interest (weight 0.3 by default)"
            ),
            OpenApiParameter("k", int, description=f"1-{params.MAX_K} (default {params.DEFAULT_K})"),
        ],
        # 503 search_unavailable (the encoder is misconfigured) is the Error the hook adds to every operation
        responses={200: serializers.SearchOutSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        query = request.query_params
        text = params.parse_query(query.get("q"))
        user = params.parse_user(query.get("user"), required=False)
        ranked = selectors.search_items(
            tenant_id=self.tenant_id, query=text, k=params.parse_k(query.get("k")), user_ref=user
        )
        return Response(
            {
                "query": text,
                "user": user,
                "items": ranked.items,
                "personalised": ranked.extra["personalised"],
                "user_weight": ranked.extra["user_weight"],
                "note": ranked.note,
                "request_id": _request_id(request),
            }
        )

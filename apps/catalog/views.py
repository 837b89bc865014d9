"""Items API: thin translation between HTTP and the catalogue's services and selectors."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.api.schema import errors
from apps.catalog import selectors, serializers, services
from apps.catalog.models import EncodingStatus, Item
from apps.catalog.validation import MAX_BATCH, parse_category_param, parse_id_param, parse_items
from apps.core.errors import DomainError

_STATUSES = [s.value for s in EncodingStatus]


def item_repr(item: Item) -> dict[str, Any]:
    encoding: dict[str, Any] = {
        "status": item.encoding_status,
        "model": item.encoding_model or None,
        "updated_at": item.encoding_updated_at.isoformat() if item.encoding_updated_at else None,
        "truncated": bool(item.encoding_truncated) if item.encoding_status == EncodingStatus.READY else None,
    }
    if item.encoding_status == EncodingStatus.FAILED:
        encoding["error"] = item.encoding_error
    return {
        "id": item.external_id,
        "title": item.title,
        "description": item.description,
        "categories": list(item.categories),
        "attributes": item.attributes,
        "available": item.available,
        "created_at": item.created_at.isoformat(),
        "updated_at": item.updated_at.isoformat(),
        "encoding": encoding,
    }


def _int_param(request: Request, name: str, *, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DomainError(f"{name} must be an integer", details={name: raw}) from None
    if not low <= value <= high:
        raise DomainError(f"{name} must be from {low} to {high}, got {value}", details={name: raw})
    return value


class ItemsView(TenantAPIView):
    """``POST``: upsert up to 1000 items (scope ingest). ``GET``: list items, keyset-paginated (scope serve)."""

    scope = {"GET": "serve", "POST": "ingest"}

    @extend_schema(
        summary="Upsert up to 1000 items by your id; encoding is queued for new or changed text",
        request=serializers.ItemsUpsertInSerializer,
        responses={
            200: serializers.ItemsUpsertOutSerializer,
            **errors(400, described={413: f"more than {MAX_BATCH} items, or a body over the size limit"}),
        },
    )
    def post(self, request: Request) -> Response:
        body = request.data
        self.note_batch_size(body, "items")
        if not isinstance(body, dict) or "items" not in body:
            raise DomainError('expected a JSON object {"items": [...]}', details={"items": "is required"})
        items = parse_items(body["items"])
        result = services.items_upsert(tenant_id=self.tenant_id, items=items)
        return Response(result.as_dict(), status=200)

    @extend_schema(
        operation_id="v1_items_list",
        summary="List items in creation order, keyset-paginated",
        parameters=[
            OpenApiParameter("limit", int, description="items per page, 1-200 (default 50)"),
            OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
            OpenApiParameter("status", str, enum=_STATUSES, description="only items in this encoding state"),
            OpenApiParameter("category", str, description="only items in this category"),
        ],
        responses={200: serializers.ItemsPageOutSerializer, **errors(400)},
    )
    def get(self, request: Request) -> Response:
        limit = _int_param(request, "limit", default=50, low=1, high=selectors.MAX_PAGE)
        after = _int_param(request, "cursor", default=None, low=0, high=2**63 - 1)
        status = request.query_params.get("status") or None
        if status is not None and status not in _STATUSES:
            raise DomainError(f"status must be one of {_STATUSES}", details={"status": status})
        page = selectors.items_page(
            tenant_id=self.tenant_id,
            after_pk=after,
            limit=limit or 50,
            status=status,
            category=parse_category_param(request.query_params.get("category")),
        )
        return Response(
            {
                "items": [item_repr(item) for item in page.items],
                "next_cursor": str(page.next_cursor) if page.next_cursor is not None else None,
            }
        )


class ItemView(TenantAPIView):
    """``GET`` one item with its encoding state (scope serve); ``DELETE`` it and its vector (scope ingest)."""

    scope = {"GET": "serve", "DELETE": "ingest"}

    @extend_schema(
        summary="One item with its encoding state",
        responses={200: serializers.ItemOutSerializer, **errors(400, 404)},
    )
    def get(self, request: Request, external_id: str) -> Response:
        return Response(
            item_repr(selectors.item_get(tenant_id=self.tenant_id, external_id=parse_id_param(external_id)))
        )

    @extend_schema(
        summary="Delete the item and its content vector", responses={204: None, **errors(400, 404)}
    )
    def delete(self, request: Request, external_id: str) -> Response:
        services.item_delete(tenant_id=self.tenant_id, external_id=parse_id_param(external_id))
        return Response(status=204)


class SimilarItemsView(TenantAPIView):
    """Items nearest by content vector, the item itself excluded; ``k`` 1-100 (default 10)."""

    scope = "serve"

    @extend_schema(
        summary="Items nearest by content (cosine over content vectors), the item itself excluded",
        parameters=[
            OpenApiParameter("k", int, description="how many, 1-100 (default 10)"),
            OpenApiParameter("category", str, description="only items in this category"),
        ],
        responses={
            200: serializers.SimilarItemsOutSerializer,
            **errors(400, 404, described={409: "the item has no content vector yet (not_encoded)"}),
        },
    )
    def get(self, request: Request, external_id: str) -> Response:
        k = selectors.parse_k(request.query_params.get("k"))
        found = selectors.similar_items(
            tenant_id=self.tenant_id,
            external_id=parse_id_param(external_id),
            k=k,
            category=parse_category_param(request.query_params.get("category")),
        )
        return Response({"id": external_id, "k": k, "items": found})


class CatalogStatusView(TenantAPIView):
    """Encoding progress counts for the key's tenant."""

    scope = "serve"

    @extend_schema(
        summary="Encoding progress: items pending, ready, failed",
        responses={200: serializers.CatalogStatusOutSerializer},
    )
    def get(self, request: Request) -> Response:
        return Response(selectors.catalog_status(tenant_id=self.tenant_id))

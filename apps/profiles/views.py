"""``/api/v1/users/{id}`` (attributes, access export, erasure) and ``/api/v1/events`` (ingest).

All under the ``ingest`` scope: the client app that sends a user's data is the one that answers
that user's access and erasure requests. Views only translate; services do the work.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView
from apps.api.schema import errors
from apps.core.errors import DomainError
from apps.profiles import serializers, services
from apps.profiles.validation import MAX_EVENTS_PER_BATCH, validate_attributes, validate_events
from apps.tenancy.pseudonyms import InvalidReference, normalise_ref


def _user_ref(raw: str) -> str:
    try:
        return normalise_ref(raw)
    except InvalidReference as exc:
        raise DomainError(f"user id {exc}") from None


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DomainError(f"{name} must be an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise DomainError(f"{name} must be an integer from {low} to {high}")
    return value


class UserView(TenantAPIView):
    """One end user, by the client's own id (pseudonymised on arrival, never stored)."""

    scope = "ingest"

    @extend_schema(
        summary="Access export: everything held about the user (audited)",
        parameters=[
            OpenApiParameter("events_offset", int, description="first event of the page (default 0)"),
            OpenApiParameter(
                "events_limit", int, description="events per page (default 1000, at most 10000)"
            ),
        ],
        responses={
            200: serializers.UserExportOutSerializer,
            **errors(400, described={404: "no data is held about this user (or it was erased)"}),
        },
    )
    def get(self, request: Request, user_ref: str) -> Response:
        export = services.user_export(
            tenant_id=self.tenant_id,
            user_ref=_user_ref(user_ref),
            actor=self.principal.actor,
            events_offset=_int_param(request, "events_offset", 0, 0, 2**62),
            events_limit=_int_param(request, "events_limit", 1000, 1, services.MAX_EXPORT_EVENTS_PAGE),
        )
        return Response(export)

    @extend_schema(
        summary="Replace the user's attributes (each encrypted under the user's key)",
        request=serializers.UserAttributesInSerializer,
        # 404: an id the URL route cannot carry (a line break) reaches no endpoint
        responses={
            200: serializers.UserAttributesOutSerializer,
            201: serializers.UserAttributesOutSerializer,
            **errors(400, 404, described={413: "over the attribute limits, or a body over the size limit"}),
        },
    )
    def put(self, request: Request, user_ref: str) -> Response:
        ref = _user_ref(user_ref)
        attributes = validate_attributes(request.data)
        result = services.user_attributes_put(
            tenant_id=self.tenant_id, user_ref=ref, attributes=attributes, actor=self.principal.actor
        )
        return Response(
            {"user": ref, "attributes_stored": result.stored, "created": result.created_user},
            status=201 if result.created_user else 200,
        )

    @extend_schema(
        summary="Erase the user: events, state, attributes and key; returns a receipt",
        responses={
            200: serializers.ErasureReceiptOutSerializer,
            **errors(400, described={404: "no data is held about this user (or it was erased)"}),
        },
    )
    def delete(self, request: Request, user_ref: str) -> Response:
        receipt = services.user_erase(
            tenant_id=self.tenant_id, user_ref=_user_ref(user_ref), actor=self.principal.actor
        )
        return Response(receipt)


class EventsView(TenantAPIView):
    """Interaction events: validated as a whole, stored idempotently, folded into user states at once."""

    scope = "ingest"

    @extend_schema(
        summary="Ingest up to 1000 events; 201 once committed (the next request sees them)",
        request=serializers.EventsInSerializer,
        responses={
            201: serializers.EventsIngestOutSerializer,
            **errors(
                described={
                    400: "invalid events (listed by index), or unknown items; nothing was written",
                    413: f"more than {MAX_EVENTS_PER_BATCH} events, or a body over the size limit",
                }
            ),
        },
    )
    def post(self, request: Request) -> Response:
        payload = request.data
        self.note_batch_size(payload, "events")
        events = validate_events(payload)
        result = services.events_ingest(tenant_id=self.tenant_id, events=events, total=len(payload["events"]))
        return Response(result.as_dict(), status=201)

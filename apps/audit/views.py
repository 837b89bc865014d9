"""Audit endpoints: the reviewer's export (scope ``audit``) and the public signing key (no auth)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.base import TenantAPIView
from apps.api.schema import errors
from apps.audit.ranges import parse_time_bound
from apps.audit.selectors import audit_public_key
from apps.audit.serializers import AuditPublicKeyOutSerializer
from apps.audit.services import audit_export_bundle, audit_export_csv
from apps.core.errors import DomainError, NotFound
from apps.tenancy.selectors import tenant_get

FORMATS = {"zip": ("application/zip", "zip"), "csv": ("text/csv; charset=utf-8", "csv")}


class _IgnoreFormatParam(BaseContentNegotiation):
    """``?format=zip|csv`` picks the export format here, not a DRF renderer; errors stay JSON."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        renderer: BaseRenderer = renderers[0]
        return renderer, renderer.media_type


class AuditExportView(TenantAPIView):
    """``GET /api/v1/audit/export?since=&until=&format=zip|csv``: the signed bundle (or the CSV view)."""

    scope = "audit"
    content_negotiation_class = _IgnoreFormatParam

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "since", OpenApiTypes.STR, description="ISO 8601 date or time (UTC if no zone), inclusive"
            ),
            OpenApiParameter("until", OpenApiTypes.STR, description="ISO 8601 date or time, exclusive"),
            OpenApiParameter(
                "format", OpenApiTypes.STR, enum=["zip", "csv"], description="zip (signed bundle) or csv"
            ),
        ],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="signed bundle"),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="spreadsheet view"),
            **errors(
                described={
                    400: "bad since/until/format",
                    404: "the key's tenant is gone",
                    409: "the stored chain fails verification",
                }
            ),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        fmt = request.query_params.get("format", "zip") or "zip"
        if fmt not in FORMATS:
            raise DomainError("format must be zip or csv", details={"format": fmt[:20]})
        since = parse_time_bound("since", request.query_params.get("since"))
        until = parse_time_bound("until", request.query_params.get("until"))
        tenant = tenant_get(slug=self.principal.tenant_slug)
        if tenant is None or tenant.pk != self.tenant_id:
            raise NotFound("not found")
        export = audit_export_bundle if fmt == "zip" else audit_export_csv
        data = export(tenant=tenant, since=since, until=until, actor=self.principal.actor)
        content_type, ext = FORMATS[fmt]
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response = HttpResponse(data, content_type=content_type)
        response["Content-Disposition"] = f'attachment; filename="sotto-audit-{tenant.slug}-{stamp}.{ext}"'
        response["Cache-Control"] = "no-store"
        return response


class AuditPublicKeyView(APIView):
    """``GET /api/v1/audit/public-key``: the Ed25519 key checkpoints are signed with. Public on
    purpose (no credentials needed to verify); reviewers still compare the fingerprint out of band."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(
        auth=[],
        responses={200: AuditPublicKeyOutSerializer},
    )
    def get(self, request: Request) -> Response:
        info = audit_public_key()
        return Response(
            {
                "algorithm": info.algorithm,
                "key_id": info.key_id,
                "fingerprint": info.fingerprint,
                "public_key_pem": info.public_key_pem,
            }
        )


class AuditPublicKeyPemView(APIView):
    """``GET /api/v1/audit/public-key.pem``: the same key as a file for ``--public-key``."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    @extend_schema(auth=[], responses={(200, "application/x-pem-file"): OpenApiTypes.STR})
    def get(self, request: Request) -> HttpResponse:
        info = audit_public_key()
        response = HttpResponse(info.public_key_pem, content_type="application/x-pem-file")
        response["Content-Disposition"] = f'inline; filename="sotto-audit-{info.key_id}.pem"'
        return response

"""Endpoints owned by the API app itself: who am I (tenant and scopes of the presented key)."""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView


class TenantView(TenantAPIView):
    """The tenant and scopes behind the presented API key (a cheap authenticated ping)."""

    def get(self, request: Request) -> Response:
        principal = self.principal
        return Response(
            {"tenant": principal.tenant_slug, "key_prefix": principal.prefix, "scopes": sorted(principal.scopes)}
        )

"""Endpoints owned by the API app itself: who am I (tenant and scopes of the presented key), and the
tenant's settings document, which composes the apps' own settings services."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api import serializers, tenant_settings
from apps.api.base import TenantAPIView
from apps.api.schema import errors


class TenantView(TenantAPIView):
    """The tenant and scopes behind the presented API key (a cheap authenticated ping)."""

    @extend_schema(responses={200: serializers.TenantOutSerializer})
    def get(self, request: Request) -> Response:
        principal = self.principal
        return Response(
            {
                "tenant": principal.tenant_slug,
                "key_prefix": principal.prefix,
                "scopes": sorted(principal.scopes),
            }
        )


class TenantSettingsView(TenantAPIView):
    """``GET``: every setting a tenant admin controls. ``PATCH``: change any subset, all or nothing
    (scope ``admin``); each change is audited by the app that owns it."""

    scope = "admin"

    @extend_schema(responses={200: serializers.TenantSettings})
    def get(self, request: Request) -> Response:
        return Response(
            serializers.TenantSettings(tenant_settings.tenant_settings_get(tenant_id=self.tenant_id)).data
        )

    @extend_schema(
        request=serializers.TenantSettings, responses={200: serializers.TenantSettings, **errors(400)}
    )
    def patch(self, request: Request) -> Response:
        body = serializers.TenantSettings(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        after = tenant_settings.tenant_settings_update(
            tenant_id=self.tenant_id, changes=dict(body.validated_data), actor=self.principal.actor
        )
        return Response(serializers.TenantSettings(after).data)

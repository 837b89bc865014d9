"""API v1 routing: each app that serves API endpoints contributes its own ``urls`` module."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.api.views import TenantSettingsView, TenantView

_APP_URLS = [
    "apps.profiles.urls",
    "apps.catalog.urls",
    "apps.modeling.urls",
    "apps.serving.urls",
    "apps.slo.urls",
    "apps.audit.urls",
]

v1: list[URLPattern | URLResolver] = [
    path("tenant", TenantView.as_view(), name="tenant"),
    path("tenant/settings", TenantSettingsView.as_view(), name="tenant-settings"),
    *(path("", include(module)) for module in _APP_URLS),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("v1/", include(v1)),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # our template: drf-spectacular's, without the Google Fonts links (offline, like /api/docs/)
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="api/redoc.html"),
        name="redoc",
    ),
]

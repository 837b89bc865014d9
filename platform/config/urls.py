from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from apps.core import views as core_views

urlpatterns: list[URLPattern | URLResolver] = [
    path("health/live", core_views.live, name="health-live"),
    path("health/ready", core_views.ready, name="health-ready"),
    path("api/", include("apps.api.urls")),
    path("", include("apps.webadmin.urls")),
    path("admin/", admin.site.urls),
]

# JSON under /api/ (and /health/); the web admin's HTML page everywhere else.
handler404 = "apps.webadmin.views.errors.page_not_found"
handler500 = "apps.api.errors.json_500"

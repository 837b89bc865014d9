from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path

from apps.core import views as core_views
from apps.core.modules import module_exists

urlpatterns: list[URLPattern | URLResolver] = [
    path("health/live", core_views.live, name="health-live"),
    path("health/ready", core_views.ready, name="health-ready"),
    path("api/", include("apps.api.urls")),
]
if module_exists("apps.webadmin.urls"):
    urlpatterns.append(path("", include("apps.webadmin.urls")))
urlpatterns.append(path("admin/", admin.site.urls))

# JSON under /api/ (and /health/); the web admin's HTML page everywhere else, when it is installed.
handler404 = (
    "apps.webadmin.views.errors.page_not_found" if module_exists("apps.webadmin.urls") else "apps.api.errors.json_404"
)
handler500 = "apps.api.errors.json_500"

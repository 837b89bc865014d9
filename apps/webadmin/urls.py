"""The web admin at "/": sign-in, the operator console under /platform/, each tenant under /t/<slug>/."""

from __future__ import annotations

from django.urls import path

from apps.webadmin.views import auth, dashboard, keys, platform

app_name = "webadmin"

urlpatterns = [
    path("", auth.home, name="home"),
    path("login/", auth.sign_in, name="login"),
    path("logout/", auth.sign_out, name="logout"),
    path("platform/", platform.tenants, name="platform-tenants"),
    path("platform/memberships/", platform.memberships, name="platform-memberships"),
    path(
        "platform/memberships/<slug:slug>/<int:user_id>/delete/",
        platform.membership_delete,
        name="platform-membership-delete",
    ),
    path("platform/health/", platform.health, name="platform-health"),
    path("platform/health/ping/", platform.health_ping, name="platform-health-ping"),
    path("t/<slug:slug>/", dashboard.dashboard, name="dashboard"),
    path("t/<slug:slug>/keys/", keys.keys, name="keys"),
    path("t/<slug:slug>/keys/<int:key_id>/revoke/", keys.key_revoke, name="key-revoke"),
]

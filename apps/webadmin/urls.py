"""The web admin at "/": sign-in, the operator console under /platform/, each tenant under /t/<slug>/."""

from __future__ import annotations

from django.urls import path

from apps.webadmin.views import audit, auth, catalog, dashboard, keys, models, platform, privacy, slo, users

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
    path("t/<slug:slug>/catalog/", catalog.catalog, name="catalog"),
    path("t/<slug:slug>/keys/", keys.keys, name="keys"),
    path("t/<slug:slug>/keys/<int:key_id>/revoke/", keys.key_revoke, name="key-revoke"),
    path("t/<slug:slug>/slo/", slo.objectives, name="slo"),
    path("t/<slug:slug>/slo/series.json", slo.objective_series, name="slo-series"),
    path("t/<slug:slug>/slo/<str:endpoint_class>/", slo.objective_edit, name="slo-edit"),
    path("t/<slug:slug>/slo/<str:endpoint_class>/reset/", slo.objective_reset, name="slo-reset"),
    path("t/<slug:slug>/privacy/", privacy.privacy, name="privacy"),
    path("t/<slug:slug>/training-runs/<int:run_id>/", privacy.training_run, name="training-run"),
    path(
        "t/<slug:slug>/training-runs/<int:run_id>/status.json",
        privacy.training_run_status,
        name="training-run-status",
    ),
    path("t/<slug:slug>/models/", models.models, name="models"),
    path("t/<slug:slug>/models/<int:version>/activate/", models.version_activate, name="model-activate"),
    path("t/<slug:slug>/users/", users.users, name="users"),
    path("t/<slug:slug>/users/export/", users.user_export, name="user-export"),
    path("t/<slug:slug>/users/export.json", users.user_export_download, name="user-export-download"),
    path("t/<slug:slug>/users/recommendations/", users.user_recommendations, name="user-recommendations"),
    path("t/<slug:slug>/audit/", audit.audit, name="audit"),
    path("t/<slug:slug>/audit/export/", audit.audit_export, name="audit-export"),
    path("t/<slug:slug>/audit/verifier/", audit.audit_verifier, name="audit-verifier"),
    path("t/<slug:slug>/audit/public-key.pem", audit.audit_public_key_pem, name="audit-public-key"),
]

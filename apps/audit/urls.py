from __future__ import annotations

from django.urls import URLPattern, path

from apps.audit.views import AuditExportView, AuditPublicKeyPemView, AuditPublicKeyView

urlpatterns: list[URLPattern] = [
    path("audit/export", AuditExportView.as_view(), name="audit-export"),
    path("audit/public-key", AuditPublicKeyView.as_view(), name="audit-public-key"),
    path("audit/public-key.pem", AuditPublicKeyPemView.as_view(), name="audit-public-key-pem"),
]

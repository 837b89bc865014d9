from __future__ import annotations

from django.urls import URLPattern, path

from apps.slo.views import SloStatusView

urlpatterns: list[URLPattern] = [path("slo", SloStatusView.as_view(), name="slo-status")]

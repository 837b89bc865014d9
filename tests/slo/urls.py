"""Test-only URLconf: a probe endpoint at each endpoint class's URL, in front of the real routes.

The probe answers ``?status=`` (default 200) so tests choose the status class; durations come
from the injected timer, never from sleeping. A POST notes its batch size with
``TenantAPIView.note_batch_size``, as the real batch views do, and ``?note=N`` overrides it.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.request import Request
from rest_framework.response import Response

from apps.api.base import TenantAPIView


class Probe(TenantAPIView):
    scope = "serve"

    def get(self, request: Request, **kwargs: object) -> Response:
        return Response({"ok": True}, status=int(request.query_params.get("status", 200)))

    def post(self, request: Request, **kwargs: object) -> Response:
        key = request.path.rstrip("/").rsplit("/", 1)[
            -1
        ]  # events or items: note the size as the real views do
        self.note_batch_size(request.data, key)
        if "note" in request.query_params:
            request._request.sotto_batch_size = int(request.query_params["note"])  # type: ignore[attr-defined]
        return self.get(request, **kwargs)

    put = delete = get


urlpatterns = [
    path("api/v1/recommendations", Probe.as_view()),
    path("api/v1/search", Probe.as_view()),
    path("api/v1/events", Probe.as_view()),
    path("api/v1/items", Probe.as_view()),
    path("api/v1/items/<str:item_ref>/similar", Probe.as_view()),
    path("api/v1/users/<str:user_ref>", Probe.as_view()),
    path("", include("config.urls")),
]

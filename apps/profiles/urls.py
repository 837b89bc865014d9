from __future__ import annotations

from django.urls import URLPattern, path

from apps.profiles.views import EventsView, UserView

urlpatterns: list[URLPattern] = [
    path("events", EventsView.as_view(), name="events"),
    path("users/<path:user_ref>", UserView.as_view(), name="user"),
]

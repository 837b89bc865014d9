from django.urls import URLPattern, path

from apps.serving import views

urlpatterns: list[URLPattern] = [
    path("recommendations", views.RecommendationsView.as_view(), name="recommendations"),
    path("search", views.SearchView.as_view(), name="search"),
]

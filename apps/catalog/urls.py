from django.urls import path

from apps.catalog import views

# Item ids may contain "/", hence <path:>; the /similar route is tried first.
urlpatterns = [
    path("items", views.ItemsView.as_view(), name="items"),
    path("items/<path:external_id>/similar", views.SimilarItemsView.as_view(), name="item-similar"),
    path("items/<path:external_id>", views.ItemView.as_view(), name="item"),
    path("catalog/status", views.CatalogStatusView.as_view(), name="catalog-status"),
]

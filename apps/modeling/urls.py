from django.urls import path

from apps.modeling import views

urlpatterns = [
    path("training-runs", views.TrainingRunsView.as_view(), name="training-runs"),
    path("training-runs/<int:run_id>", views.TrainingRunView.as_view(), name="training-run"),
    path("privacy-budget", views.PrivacyBudgetView.as_view(), name="privacy-budget"),
    path("model-versions", views.ModelVersionsView.as_view(), name="model-versions"),
    path(
        "model-versions/<int:version>/activate",
        views.ModelVersionActivateView.as_view(),
        name="model-version-activate",
    ),
    path("popularity-release", views.PopularityReleaseView.as_view(), name="popularity-release"),
]

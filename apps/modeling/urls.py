from django.urls import path

from apps.modeling import views

urlpatterns = [
    path("training-runs", views.TrainingRunsView.as_view(), name="training-runs"),
    path("training-runs/<int:run_id>", views.TrainingRunView.as_view(), name="training-run"),
    path("privacy-budget", views.PrivacyBudgetView.as_view(), name="privacy-budget"),
    path("popularity-release", views.PopularityReleaseView.as_view(), name="popularity-release"),
]

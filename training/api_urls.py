from django.urls import path

from training import views

urlpatterns = [
    path(
        "projects/<int:project_id>/reward-models/",
        views.RewardModelListView.as_view(),
        name="api-reward-models",
    ),
    path("reward-models/<int:run_id>/", views.RewardModelDetailView.as_view(), name="api-reward-model"),
    path(
        "reward-models/<int:run_id>/cancel/",
        views.RewardModelCancelView.as_view(),
        name="api-reward-model-cancel",
    ),
    path(
        "reward-models/<int:run_id>/promote/",
        views.RewardModelPromoteView.as_view(),
        name="api-reward-model-promote",
    ),
]

from django.urls import path

from training import round_views, views

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
    path("projects/<int:project_id>/rounds/", round_views.RoundListView.as_view(), name="api-rounds"),
    path("rounds/<int:round_id>/", round_views.RoundDetailView.as_view(), name="api-round"),
    path("rounds/<int:round_id>/cancel/", round_views.RoundCancelView.as_view(), name="api-round-cancel"),
    path("rounds/<int:round_id>/retry/", round_views.RoundRetryView.as_view(), name="api-round-retry"),
]

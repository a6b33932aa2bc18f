from django.urls import path

from training import round_views, views

app_name = "training"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<int:project_id>/reward-models/", views.reward_models, name="reward-models"),
    path(
        "projects/<int:project_id>/reward-models/start/", views.reward_model_start, name="reward-model-start"
    ),
    path("reward-models/<int:run_id>/cancel/", views.reward_model_cancel_view, name="reward-model-cancel"),
    path("reward-models/<int:run_id>/promote/", views.reward_model_promote_view, name="reward-model-promote"),
    # RLHF rounds
    path("projects/<int:project_id>/rounds/", round_views.rounds, name="rounds"),
    path("projects/<int:project_id>/rounds/start/", round_views.round_start_view, name="round-start"),
    path(
        "projects/<int:project_id>/rounds/settings/", round_views.round_settings_save, name="round-settings"
    ),
    path("rounds/<int:round_id>/", round_views.round_detail, name="round"),
    path("rounds/<int:round_id>/cancel/", round_views.round_cancel_view, name="round-cancel"),
    path("rounds/<int:round_id>/retry/", round_views.round_retry_view, name="round-retry"),
]

"""Ops pages for reward-model runs and RLHF rounds, grouped by the object in the path."""

from django.urls import include, path

from training import gate_views, round_views, views

app_name = "training"

reward_model_pages = [  # a project's runs
    path("", views.reward_models, name="reward-models"),
    path("start/", views.reward_model_start, name="reward-model-start"),
]
round_pages = [  # a project's rounds
    path("", round_views.rounds, name="rounds"),
    path("start/", round_views.round_start_view, name="round-start"),
    path("settings/", round_views.round_settings_save, name="round-settings"),
    # Gates, rollback, the paused schedule (training/gate_views.py).
    path("rollback/", gate_views.policy_rollback_view, name="policy-rollback"),
    path("resume/", gate_views.schedule_resume_view, name="schedule-resume"),
]
run_actions = [
    path("cancel/", views.reward_model_cancel_view, name="reward-model-cancel"),
    path("promote/", views.reward_model_promote_view, name="reward-model-promote"),
]
round_actions = [
    path("", round_views.round_detail, name="round"),
    path("cancel/", round_views.round_cancel_view, name="round-cancel"),
    path("retry/", round_views.round_retry_view, name="round-retry"),
    path("gate/", gate_views.round_gate_check_view, name="round-gate-check"),
]

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<int:project_id>/reward-models/", include(reward_model_pages)),
    path("projects/<int:project_id>/rounds/", include(round_pages)),
    path("reward-models/<int:run_id>/", include(run_actions)),
    path("rounds/<int:round_id>/", include(round_actions)),
]

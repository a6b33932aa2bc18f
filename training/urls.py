"""Ops pages for reward-model runs and RLHF rounds, grouped by the object in the path."""

from django.urls import include, path

from training import gate_views, judge_views, leaderboard_views, round_views, views

app_name = "training"

reward_model_pages = [  # a project's runs
    path("", views.reward_models, name="reward-models"),
    path("start/", views.reward_model_start, name="reward-model-start"),
]
round_pages = [  # a project's rounds
    path("", round_views.rounds, name="rounds"),
    path("start/", round_views.round_start_view, name="round-start"),
    path("settings/", round_views.round_settings_save, name="round-settings"),
    path("eval-prompts/", round_views.eval_prompts_mark_view, name="eval-prompts-mark"),
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
    path("evaluate/", round_views.round_evaluate_view, name="round-evaluate"),
    path("gate/", gate_views.round_gate_check_view, name="round-gate-check"),
]

judge_pages = [  # a project's judges and judge runs
    path("", judge_views.judges, name="judges"),
    path("start/", judge_views.judge_run_start, name="judge-run-start"),
]

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<int:project_id>/reward-models/", include(reward_model_pages)),
    path("projects/<int:project_id>/rounds/", include(round_pages)),
    path("projects/<int:project_id>/leaderboard/", leaderboard_views.leaderboard, name="leaderboard"),
    path("reward-models/<int:run_id>/", include(run_actions)),
    path("rounds/<int:round_id>/", include(round_actions)),
    path("projects/<int:project_id>/judges/", include(judge_pages)),
    path("judge-runs/<int:run_id>/cancel/", judge_views.judge_run_cancel_view, name="judge-run-cancel"),
]

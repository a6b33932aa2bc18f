"""REST API for reward-model runs and RLHF rounds (mounted at /api/training/)."""

from django.urls import include, path

from training import gate_views, judge_views, leaderboard_views, round_views, views

runs = [
    path("", views.RewardModelDetailView.as_view(), name="api-reward-model"),
    path("cancel/", views.RewardModelCancelView.as_view(), name="api-reward-model-cancel"),
    path("promote/", views.RewardModelPromoteView.as_view(), name="api-reward-model-promote"),
]
rounds = [
    path("", round_views.RoundDetailView.as_view(), name="api-round"),
    path("cancel/", round_views.RoundCancelView.as_view(), name="api-round-cancel"),
    path("retry/", round_views.RoundRetryView.as_view(), name="api-round-retry"),
    path("gate/", gate_views.RoundGateCheckView.as_view(), name="api-round-gate-check"),
]

urlpatterns = [
    path(
        "projects/<int:project_id>/reward-models/",
        views.RewardModelListView.as_view(),
        name="api-reward-models",
    ),
    path("projects/<int:project_id>/rounds/", round_views.RoundListView.as_view(), name="api-rounds"),
    path(
        "projects/<int:project_id>/round-settings/",
        round_views.RoundSettingsView.as_view(),
        name="api-round-settings",
    ),
    path(
        "projects/<int:project_id>/leaderboard/",
        leaderboard_views.LeaderboardView.as_view(),
        name="api-leaderboard",
    ),
    path(
        "projects/<int:project_id>/rollback/",
        gate_views.PolicyRollbackView.as_view(),
        name="api-policy-rollback",
    ),
    path("reward-models/<int:run_id>/", include(runs)),
    path("rounds/<int:round_id>/", include(rounds)),
    path(
        "projects/<int:project_id>/judge-runs/", judge_views.JudgeRunListView.as_view(), name="api-judge-runs"
    ),
    path("judge-runs/<int:run_id>/", judge_views.JudgeRunDetailView.as_view(), name="api-judge-run"),
    path(
        "judge-runs/<int:run_id>/cancel/",
        judge_views.JudgeRunCancelView.as_view(),
        name="api-judge-run-cancel",
    ),
    path("judges/", judge_views.JudgeListView.as_view(), name="api-judges"),
]

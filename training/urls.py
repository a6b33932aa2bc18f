from django.urls import path

from training import views

app_name = "training"

urlpatterns = [
    path("", views.index, name="index"),
    path("projects/<int:project_id>/reward-models/", views.reward_models, name="reward-models"),
    path(
        "projects/<int:project_id>/reward-models/start/", views.reward_model_start, name="reward-model-start"
    ),
    path("reward-models/<int:run_id>/cancel/", views.reward_model_cancel_view, name="reward-model-cancel"),
    path("reward-models/<int:run_id>/promote/", views.reward_model_promote_view, name="reward-model-promote"),
]

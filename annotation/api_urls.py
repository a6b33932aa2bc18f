"""The rating REST API (mounted at /api/)."""

from django.urls import include, path

from annotation import api

project_api = [
    path("next/", api.NextView.as_view(), name="api-next"),
    path("progress/", api.ProgressView.as_view(), name="api-progress"),
]
comparison_api = [
    path("preference/", api.PreferenceSubmitView.as_view(), name="api-preference"),
    path("skip/", api.SkipView.as_view(), name="api-skip"),
]

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", include(project_api)),
    path("comparisons/<int:comparison_id>/", include(comparison_api)),
    path("preferences/mine/", api.MyPreferencesView.as_view(), name="api-preferences-mine"),
]

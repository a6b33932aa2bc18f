"""The rating REST API (mounted at /api/)."""

from django.urls import include, path

import core.validation  # noqa: F401 - registers the <id:...> path converter
from annotation import api, member_views
from annotation.quality import api as quality_api

project_api = [
    path("next/", api.NextView.as_view(), name="api-next"),
    path("progress/", api.ProgressView.as_view(), name="api-progress"),
    path("raters/quality/", quality_api.RaterQualityView.as_view(), name="api-raters-quality"),
    path("raters/<int:rater_id>/state/", quality_api.RaterStateView.as_view(), name="api-rater-state"),
    path("gold/", quality_api.GoldView.as_view(), name="api-project-gold"),
    path("members/", member_views.MembersView.as_view(), name="api-project-members"),
    path("members/<int:user_id>/", member_views.MemberView.as_view(), name="api-project-member"),
]
comparison_api = [
    path("preference/", api.PreferenceSubmitView.as_view(), name="api-preference"),
    path("skip/", api.SkipView.as_view(), name="api-skip"),
]

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<id:project_id>/", include(project_api)),
    path("comparisons/<id:comparison_id>/", include(comparison_api)),
    path("preferences/mine/", api.MyPreferencesView.as_view(), name="api-preferences-mine"),
]

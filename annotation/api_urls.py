"""The rating REST API (mounted at /api/)."""

from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token

from annotation import api, member_views

project_api = [
    path("next/", api.NextView.as_view(), name="api-next"),
    path("progress/", api.ProgressView.as_view(), name="api-progress"),
    path("members/", member_views.MembersView.as_view(), name="api-project-members"),
    path("members/<int:user_id>/", member_views.MemberView.as_view(), name="api-project-member"),
]
comparison_api = [
    path("preference/", api.PreferenceSubmitView.as_view(), name="api-preference"),
    path("skip/", api.SkipView.as_view(), name="api-skip"),
]

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/", include(project_api)),
    path("comparisons/<int:comparison_id>/", include(comparison_api)),
    path("preferences/mine/", api.MyPreferencesView.as_view(), name="api-preferences-mine"),
]

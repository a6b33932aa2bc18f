from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token

from annotation import api

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<int:project_id>/next/", api.NextView.as_view(), name="api-next"),
    path("projects/<int:project_id>/progress/", api.ProgressView.as_view(), name="api-progress"),
    path(
        "comparisons/<int:comparison_id>/preference/",
        api.PreferenceSubmitView.as_view(),
        name="api-preference",
    ),
    path("comparisons/<int:comparison_id>/skip/", api.SkipView.as_view(), name="api-skip"),
    path("preferences/mine/", api.MyPreferencesView.as_view(), name="api-preferences-mine"),
]

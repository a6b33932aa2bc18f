from django.urls import path

from annotation import ops_views

urlpatterns = [
    path("", ops_views.project_list, name="ops-projects"),
    path("projects/new/", ops_views.project_edit, name="ops-project-create"),
    path("projects/<int:pk>/edit/", ops_views.project_edit, name="ops-project-edit"),
    path("projects/<int:pk>/import/", ops_views.project_import, name="ops-project-import"),
    path("projects/<int:pk>/prompts/", ops_views.project_prompts_import, name="ops-project-prompts"),
]

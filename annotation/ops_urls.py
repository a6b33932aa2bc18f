"""Ops pages: projects and their imports (mounted at /ops/)."""

from django.urls import include, path

from annotation import member_views, ops_views
from annotation.quality import views as quality_views

project_pages = [
    path("edit/", ops_views.project_edit, name="ops-project-edit"),
    path("import/", ops_views.project_import, name="ops-project-import"),
    path("prompts/", ops_views.project_prompts_import, name="ops-project-prompts"),
    path("raters/", quality_views.raters_page, name="ops-project-raters"),
    path("gold/promote/", quality_views.gold_promote, name="ops-project-gold-promote"),
    path("members/", member_views.project_members_page, name="ops-project-members"),
]

urlpatterns = [
    path("", ops_views.project_list, name="ops-projects"),
    path("projects/new/", ops_views.project_edit, name="ops-project-create"),
    path("projects/<int:pk>/", include(project_pages)),
]

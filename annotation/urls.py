"""Rater pages (mounted at the site root)."""

from django.conf import settings
from django.urls import include, path
from django.views.generic import RedirectView

import core.validation  # noqa: F401 - registers the <id:...> path converter
from annotation import views

app_name = "rater"

project_pages = [
    path("rate/", views.rate, name="rate"),
    path("rate/<id:comparison_id>/submit/", views.submit, name="submit"),
    path("rate/<id:comparison_id>/skip/", views.skip, name="skip"),
    path("votes/<id:preference_id>/revise/", views.revise, name="revise"),
    path("guidelines/", views.guidelines, name="guidelines"),
    path("progress/", views.progress, name="progress"),
]

urlpatterns = [
    path("", views.home, name="home"),
    # Pages without base.html (admin, API docs) make browsers ask for /favicon.ico.
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True)),
    path("projects/<id:project_id>/", include(project_pages)),
]

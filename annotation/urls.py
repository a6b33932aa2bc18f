"""Rater pages (mounted at the site root)."""

from django.urls import include, path

from annotation import views

app_name = "rater"

project_pages = [
    path("rate/", views.rate, name="rate"),
    path("rate/<int:comparison_id>/submit/", views.submit, name="submit"),
    path("rate/<int:comparison_id>/skip/", views.skip, name="skip"),
    path("votes/<int:preference_id>/revise/", views.revise, name="revise"),
    path("guidelines/", views.guidelines, name="guidelines"),
    path("progress/", views.progress, name="progress"),
]

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/", include(project_pages)),
]

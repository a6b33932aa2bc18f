"""Rater pages (mounted at the site root)."""

from django.urls import path

from annotation import views

app_name = "rater"

urlpatterns = [
    path("", views.home, name="home"),
    path("projects/<int:project_id>/rate/", views.rate, name="rate"),
    path("projects/<int:project_id>/rate/<int:comparison_id>/submit/", views.submit, name="submit"),
    path("projects/<int:project_id>/rate/<int:comparison_id>/skip/", views.skip, name="skip"),
    path("projects/<int:project_id>/guidelines/", views.guidelines, name="guidelines"),
    path("projects/<int:project_id>/progress/", views.progress, name="progress"),
]

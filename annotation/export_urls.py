from django.urls import path

from annotation import export_views

urlpatterns = [
    path("", export_views.exports_home, name="export-home"),
    path("<int:export_id>/", export_views.export_detail, name="export-detail"),
    path("<int:export_id>/download/", export_views.export_download, name="export-download"),
    path("<int:export_id>/cancel/", export_views.export_cancel_view, name="export-cancel"),
]

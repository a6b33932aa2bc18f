from django.urls import path

from annotation import export_api

urlpatterns = [
    path("", export_api.ExportListView.as_view(), name="api-exports"),
    path("<int:export_id>/", export_api.ExportDetailView.as_view(), name="api-export"),
    path("<int:export_id>/card/", export_api.ExportCardView.as_view(), name="api-export-card"),
    path("<int:export_id>/download/", export_api.ExportDownloadView.as_view(), name="api-export-download"),
    path("<int:export_id>/cancel/", export_api.ExportCancelView.as_view(), name="api-export-cancel"),
]

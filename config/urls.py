from csp.decorators import csp_update
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.utils.decorators import method_decorator
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView


@method_decorator(csp_update({"img-src": ["data:"]}), name="dispatch")
class ApiDocsView(SpectacularSwaggerSplitView):
    """Swagger UI under the CSP: the split view serves its start-up script as a file
    (`?script`), not inline, and our template moves its inline style into static/. Its
    bundle draws icons from data: images, allowed on this page only."""

    template_name = "api/swagger_ui.html"


urlpatterns = [
    path("admin/", admin.site.urls),
    # A logged-in user who comes back to the login form (Back from the first page) is sent on.
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("accounts.urls")),  # the user's API tokens
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    # Each include is one module with its own owner; see DESIGN.md for the layout.
    path("api/auth/", include("accounts.api_urls")),  # tokens: issue, list, revoke
    path("api/", include("annotation.api_urls")),  # rating API: next / submit / skip / progress
    path("api/exports/", include("annotation.export_api_urls")),  # dataset exports (REST)
    path("api/training/", include("training.api_urls")),  # reward models, rounds (REST)
    path("ops/", include("annotation.ops_urls")),  # ops: projects, imports
    path("exports/", include("annotation.export_urls")),  # researcher export pages
    path("training/", include("training.urls")),  # ops: reward-model runs, rounds
    path("", include("annotation.urls")),  # rater pages
]
handler404 = "core.api.not_found"

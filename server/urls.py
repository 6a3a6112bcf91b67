from __future__ import annotations

from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Swagger UI's page carries a <style> block: only this page may use inline styles (no inline script anywhere)
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="schema")),
        name="api-docs",
    ),
    path("api/", include("server.core.urls")),
    path("api/", include("server.studio.urls")),
    path("", include("annotator_ui.urls")),
]

handler404 = "server.core.errors.not_found_view"
handler500 = "server.core.errors.server_error_view"

from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.errors import api_not_found
from ops.health import healthz, readyz
from ops.media import serve_media
from ops.metrics import metrics_view

urlpatterns = [
    path("api/", include("cars.api.urls")),
    path("api/imports/", include("imports.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    re_path(r"^api/", api_not_found),  # JSON 404 under /api/, even with DEBUG on
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("gallery.urls")),
]

if settings.SERVE_MEDIA:
    # Local media for development and `make run`; production serves media from S3 or a proxy.
    urlpatterns.append(re_path(rf"^{settings.MEDIA_URL.lstrip('/')}(?P<path>.*)$", serve_media))

handler404 = "core.errors.not_found"
handler500 = "core.errors.server_error"

"""Serving local media from Django (development and `make run` only)."""

from django.conf import settings
from django.views.static import serve

# Stored names carry their content's hash (pictures by content, SPEC §5): a URL never
# serves other bytes, so browsers and CDNs may keep them for good. S3 objects carry the
# same header (STORAGES' object_parameters), and so does the compose nginx.
IMMUTABLE = "public, max-age=31536000, immutable"


def serve_media(request, path: str):
    # MEDIA_ROOT is read per request, not frozen when the URLconf loads.
    response = serve(request, path, document_root=settings.MEDIA_ROOT)
    if response.status_code == 200:
        response["Cache-Control"] = IMMUTABLE
    return response

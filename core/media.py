"""Serving local media from Django (development and `make run` only)."""

from django.conf import settings
from django.views.static import serve


def serve_media(request, path: str):
    # MEDIA_ROOT is read per request, not frozen when the URLconf loads.
    return serve(request, path, document_root=settings.MEDIA_ROOT)

"""Errors under /api/ are JSON (`{"detail": ...}`), never an HTML page or a traceback."""

import logging

from django.http import JsonResponse
from django.views import defaults
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


def api_exception_handler(exc, context):
    """DRF's handler, plus a JSON 500 for anything it does not know."""
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", context.get("view"))
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def api_not_found(request, *args, **kwargs):
    return JsonResponse({"detail": "Not found."}, status=404)


def not_found(request, exception=None):
    if _is_api(request):
        return JsonResponse({"detail": "Not found."}, status=404)
    return defaults.page_not_found(request, exception)


def server_error(request):
    if _is_api(request):
        return JsonResponse({"detail": "Internal server error."}, status=500)
    return defaults.server_error(request)

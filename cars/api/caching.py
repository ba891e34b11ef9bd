"""Conditional GET and whole-response caching for the cars API, keyed by catalogue version.

Every import (and admin edit) bumps the catalogue version, so a response cached under
version N is simply never asked for again once N+1 exists: no invalidation to get wrong.

`CatalogCacheMiddleware` answers the GETs under /api/cars/. It sits inside the
middlewares that compute headers (metrics, request id, security, CORS, X-Frame-Options),
which run around a cached answer as around a fresh one, so a settings change shows at
once; and before those a cached page does not need (sessions, CSRF, authentication,
messages, axes) and URL routing. It stores what the view made (body, Content-Type,
X-Total-Count, Link, Allow, …). The key is the version and the full URL (bodies hold
absolute URLs); `If-None-Match` with the current ETag answers 304 without the view.
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.http import parse_etags
from rest_framework.settings import api_settings

from cars.catalog import catalog_version

CACHE_SECONDS = 3600
PREFIX = "/api/cars/"


class CatalogCacheMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD") or not request.path.startswith(PREFIX):
            return self.get_response(request)
        # Kept on the request so that the view, on a miss, does not read it again.
        request.catalog_version = catalog_version()
        tag = _etag(request.catalog_version, request)
        if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
        if if_none_match and tag in parse_etags(if_none_match):
            return _finish(HttpResponseNotModified(), tag)
        key = "cars:response:" + tag.strip('"')
        # An anonymous rate limit (DRF's throttles) must see every request.
        store = not api_settings.DEFAULT_THROTTLE_CLASSES
        cached = cache.get(key) if store else None
        if cached is not None:
            content, headers = cached
            return _finish(HttpResponse(content, headers=headers), tag)
        response = self.get_response(request)  # rendered already (the handler renders)
        if store and response.status_code == 200 and not response.streaming:
            cache.set(key, (response.content, dict(response.items())), CACHE_SECONDS)
        return _finish(response, tag) if response.status_code < 500 else response


def _etag(version: int, request: HttpRequest) -> str:
    """Catalogue version + full URL. `get_host()` validates the host against ALLOWED_HOSTS
    (a bad one is a 400, never a cache entry)."""
    query = request.META.get("QUERY_STRING", "")
    key = f"{version}|{request.scheme}://{request.get_host()}{request.path}?{query}"
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


def _finish(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    response["Cache-Control"] = f"public, max-age={settings.CARS_API_MAX_AGE}" + (
        ", must-revalidate" if settings.CARS_API_MAX_AGE == 0 else ""
    )
    return response

"""Conditional GET and whole-response caching for the cars API, keyed by catalogue version.

Every import (and admin edit) bumps the catalogue version, so a response cached under
version N is simply never asked for again once N+1 exists: no invalidation to get
wrong. It is a middleware placed just inside the request id, metrics and request log
middlewares: a cached page skips the rest of the stack (security headers, CORS, sessions,
URL routing, DRF) because it is stored with the headers those added, keyed by the full
URL and the `Origin` header (CORS answers depend on it). A hit costs one primary-key
query (the version) and one cache get; `If-None-Match` with the current ETag only the
query (304).
"""

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags

from cars.catalog import catalog_version

PREFIX = "/api/cars/"
CACHE_SECONDS = 3600
# Set per request by the middlewares outside this one; never replayed from the cache.
PER_REQUEST_HEADERS = {"x-request-id"}


class CatalogResponseCacheMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        # An anonymous rate limit must see every request: then only ETags are handled.
        self.store = not settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_CLASSES")

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if (
            request.method not in ("GET", "HEAD")
            or not request.path.startswith(PREFIX)
            or (settings.SECURE_SSL_REDIRECT and not request.is_secure())  # redirect first
        ):
            return self.get_response(request)
        # Kept on the request so that the view, on a miss, does not read it again.
        request.catalog_version = catalog_version()
        tag = _etag(request.catalog_version, request)
        if tag in parse_etags(request.headers.get("If-None-Match", "")):
            return _finish(HttpResponseNotModified(), tag)
        key = "cars:response:" + tag.strip('"')
        cached = cache.get(key) if self.store else None
        if cached is not None:
            status, content, headers = cached
            return _finish(HttpResponse(content, status=status, headers=headers), tag)
        response = self.get_response(request)
        if response.status_code == 200 and not response.streaming:
            _finish(response, tag)
            if self.store:
                headers = {
                    name: value
                    for name, value in response.items()
                    if name.lower() not in PER_REQUEST_HEADERS
                }
                cache.set(key, (200, response.content, headers), CACHE_SECONDS)
            return response
        return _finish(response, tag) if response.status_code < 500 else response


def _etag(version: int, request: HttpRequest) -> str:
    """Catalogue version + full URL (bodies hold absolute URLs) + Origin (CORS headers)."""
    key = f"{version}|{request.build_absolute_uri()}|{request.headers.get('Origin', '')}"
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


def _finish(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    patch_cache_control(response, public=True, max_age=settings.CARS_API_MAX_AGE)
    if settings.CARS_API_MAX_AGE == 0:
        patch_cache_control(response, must_revalidate=True)
    return response

"""Conditional GET and whole-response caching for the cars API, keyed by catalogue version.

Every import (and admin edit) bumps the catalogue version, so a response cached under
version N is simply never asked for again once N+1 exists: no invalidation to get
wrong. A repeated request costs one primary-key query (the version) plus a cache get;
`If-None-Match` with the current ETag costs the version query alone (304).
"""

import hashlib
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.utils.cache import patch_cache_control
from django.utils.http import parse_etags

from cars.catalog import catalog_version

CACHE_SECONDS = 3600
# Headers a cached response carries (the rest are added per request by middleware).
KEPT_HEADERS = ("Content-Type", "X-Total-Count", "Link", "Allow")


def _etag(version: int, request: HttpRequest) -> str:
    # Host included: bodies hold absolute URLs.
    key = f"{version}|{request.build_absolute_uri()}"
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


def _cache_control(response: HttpResponse) -> HttpResponse:
    patch_cache_control(response, public=True, max_age=settings.CARS_API_MAX_AGE)
    if settings.CARS_API_MAX_AGE == 0:
        patch_cache_control(response, must_revalidate=True)
    return response


def cached_by_catalog_version(view: Callable) -> Callable:
    """Wrap a read-only view: ETag/304, then a cached copy of any earlier 200."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method not in ("GET", "HEAD") or _throttled_view(view):
            return view(request, *args, **kwargs)
        etag = _etag(catalog_version(), request)
        if etag in parse_etags(request.headers.get("If-None-Match", "")):
            not_modified = HttpResponseNotModified()
            not_modified["ETag"] = etag
            return _cache_control(not_modified)
        key = "cars:response:" + etag.strip('"')
        cached = cache.get(key)
        if cached is not None:
            content, headers = cached
            response = HttpResponse(content, headers=headers)
        else:
            response = view(request, *args, **kwargs)
            if hasattr(response, "render"):
                response.render()
            if response.status_code == 200:
                headers = {h: response[h] for h in KEPT_HEADERS if response.has_header(h)}
                cache.set(key, (response.content, headers), CACHE_SECONDS)
        response["ETag"] = etag
        return _cache_control(response)

    return wrapper


def _throttled_view(view) -> bool:
    """With an anonymous rate limit, every request must pass DRF's throttle: no shortcut."""
    return bool(settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_CLASSES"))

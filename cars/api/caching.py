"""Conditional GET and whole-response caching for the cars API, keyed by catalogue version.

Every import (and admin edit) bumps the catalogue version, so a response cached under
version N is simply never asked for again once N+1 exists: no invalidation to get
wrong. It is a middleware placed just inside the request id, metrics and request log
middlewares: a cached page skips the rest of the stack (security headers, CORS, sessions,
URL routing, DRF) because it is stored with the headers those added, keyed by the full
URL and the `Origin` header (CORS answers depend on it). A hit costs one primary-key
query (the version) and one lookup in this process's recent responses (then Django's
cache, Redis in production); `If-None-Match` with the current ETag only the query (304).
"""

import hashlib
import threading
import time
from collections import OrderedDict

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, HttpResponseNotModified
from django.http.response import ResponseHeaders
from django.utils.cache import patch_cache_control
from django.utils.datastructures import CaseInsensitiveMapping
from django.utils.http import parse_etags

from cars.catalog import catalog_version

PREFIX = "/api/cars/"
CACHE_SECONDS = 3600
# Set per request by the middlewares outside this one; never replayed from the cache.
PER_REQUEST_HEADERS = {"x-request-id"}


class _StoredHeaders(ResponseHeaders):
    """The headers of a response this middleware stored, replayed as they were.

    Django checked and converted each of them when that response was made;
    `ResponseHeaders` would do it again for every hit (13 headers: a fifth of a hit's
    cost), so they are loaded the way its parent mapping loads plain data.
    """

    def __init__(self, headers: dict[str, str]):
        CaseInsensitiveMapping.__init__(self, headers)


class RecentResponses:
    """This process's most recently used responses (LRU), up to `max_bytes` in all.

    It sits in front of Django's cache, whose every hit is a pickle round trip (and, on
    Redis, a network one): a third of a cached response's cost. Keys carry the catalogue
    version, so an entry is not stale while the version only grows; entries still expire
    after `ttl` seconds, like the shared cache's, in case it ever goes back (a restored
    database). An entry's size counts its key, body and headers plus a fixed overhead, so
    many tiny responses (empty searches) cannot outgrow the budget either.
    """

    ENTRY_OVERHEAD = 1024  # bytes: the tuple, dict and strings around key, body, headers

    def __init__(self, max_bytes: int | None = None, ttl: float = CACHE_SECONDS):
        self._max_bytes = max_bytes  # None: settings.CARS_API_LOCAL_CACHE_MB
        self.ttl = ttl
        self.size = 0
        self._entries: OrderedDict[str, tuple[float, int, tuple]] = OrderedDict()
        self._lock = threading.Lock()  # gthread workers share one process

    @property
    def max_bytes(self) -> int:
        if self._max_bytes is not None:
            return self._max_bytes
        return settings.CARS_API_LOCAL_CACHE_MB * 1024 * 1024

    def get(self, key: str) -> tuple | None:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            expires, size, entry = found
            if expires <= time.monotonic():
                del self._entries[key]
                self.size -= size
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: tuple) -> None:
        """`entry` is (status, content, headers); one bigger than the budget is not kept."""
        _, content, headers = entry
        size = self.ENTRY_OVERHEAD + len(key) + len(content)
        size += sum(len(name) + len(value) for name, value in headers.items())
        max_bytes = self.max_bytes
        if size > max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= old[1]
            self._entries[key] = (time.monotonic() + self.ttl, size, entry)
            self.size += size
            while self.size > max_bytes:
                _, (_, dropped, _) = self._entries.popitem(last=False)
                self.size -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.size = 0

    def __len__(self) -> int:
        return len(self._entries)


recent_responses = RecentResponses()


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
        if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
        if if_none_match and tag in parse_etags(if_none_match):
            return _not_modified(tag)
        key = "cars:response:" + tag.strip('"')
        cached = self.cached(key)
        if cached is not None:
            status, content, headers = cached
            response = HttpResponse(content, status=status)
            response.headers = _StoredHeaders(headers)
            return response
        response = self.get_response(request)
        if response.status_code == 200 and not response.streaming:
            _finish(response, tag)
            if self.store:
                headers = {
                    name: value
                    for name, value in response.items()
                    if name.lower() not in PER_REQUEST_HEADERS
                }
                entry = (200, response.content, headers)
                recent_responses.put(key, entry)
                cache.set(key, entry, CACHE_SECONDS)
            return response
        return _finish(response, tag) if response.status_code < 500 else response

    def cached(self, key: str) -> tuple | None:
        if not self.store:
            return None
        entry = recent_responses.get(key)
        if entry is None:
            entry = cache.get(key)
            if entry is not None:
                recent_responses.put(key, entry)
        return entry


def _etag(version: int, request: HttpRequest) -> str:
    """Catalogue version + full URL (bodies hold absolute URLs) + Origin (CORS headers).

    The URL is put together from the raw path and query string: `build_absolute_uri()`
    re-quotes both, which was a tenth of a cached response's cost. `get_host()` still
    validates the host against ALLOWED_HOSTS (a bad one is a 400, never a cache entry).
    """
    meta = request.META
    key = (
        f"{version}|{request.scheme}://{request.get_host()}{request.path}"
        f"?{meta.get('QUERY_STRING', '')}|{meta.get('HTTP_ORIGIN', '')}"
    )
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


def _cache_directives() -> dict:
    directives = {"public": True, "max_age": settings.CARS_API_MAX_AGE}
    if settings.CARS_API_MAX_AGE == 0:
        directives["must_revalidate"] = True
    return directives


def _cache_control() -> str:
    """The header `patch_cache_control(**_cache_directives())` gives a response without one."""
    return ", ".join(
        name.replace("_", "-") if value is True else f"{name.replace('_', '-')}={value}"
        for name, value in _cache_directives().items()
    )


def _not_modified(tag: str) -> HttpResponse:
    response = HttpResponseNotModified()
    response.headers["ETag"] = tag
    response.headers["Cache-Control"] = _cache_control()  # the string: no parse and merge
    return response


def _finish(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    patch_cache_control(response, **_cache_directives())
    return response

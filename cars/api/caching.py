"""Conditional GET and whole-response caching for the cars API, keyed by catalogue version.

Every import (and admin edit) bumps the catalogue version, so a response cached under
version N is simply never asked for again once N+1 exists: no invalidation to get wrong.

`CatalogCacheMiddleware` answers the GETs under /api/cars/. It sits inside the
middlewares that compute headers (metrics, request id, security, CORS, X-Frame-Options),
which run around a cached answer as around a fresh one, so a settings change shows at
once; and before those a cached page does not need (sessions, CSRF, authentication,
messages, axes). It stores what the view made (body, Content-Type, X-Total-Count, Link,
Allow, …); `If-None-Match` with the current ETag answers 304 without the view.

The key (and the ETag) is what makes the page, never the raw URL, so no spelling of a
request makes a new entry: the catalogue version; the scheme and host (bodies and links
hold absolute URLs); the view and its typed path arguments (`/api/cars/01/` is car 1);
the query as the view parses it (cars.api.query: an unknown parameter is ignored, a
default written out is the default); and the rendering DRF negotiates for `Accept`
(`application/json; indent=4` pretty-prints, as in any DRF API; its own entry, and
`Vary: Accept` for shared caches). That part of the key is made once per process for each
spelling of a request (`ParsedRequests`); the parsed query and the negotiated renderer
are left on the request, so on a miss the view neither parses nor negotiates again. A
request this cannot key (an unknown URL, a parameter the view refuses, no acceptable
renderer) goes to the view untouched, which answers its error; only 200s are stored.
"""

import functools
import hashlib
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.cache import cache
from django.core.signals import setting_changed
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotModified, JsonResponse
from django.http.request import split_domain_port
from django.urls import Resolver404, resolve
from django.utils.cache import patch_vary_headers
from django.utils.http import parse_etags
from rest_framework.exceptions import APIException, Throttled
from rest_framework.request import Request
from rest_framework.settings import api_settings

from cars.catalog import catalog_version

CACHE_SECONDS = 3600  # every entry expires (docs/deploying.md: the cache's Redis evicts)
PREFIX = "/api/cars/"


class CatalogCacheMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method not in ("GET", "HEAD") or not request.path.startswith(PREFIX):
            return self.get_response(request)
        parsed = PARSED.get(request)
        if parsed is None:
            return self.get_response(request)
        # Kept on the request so that the view, on a miss, reads, parses and negotiates
        # none of them again.
        request.catalog_version = catalog_version()
        request.cars_query, request.cars_rendering = parsed.query, parsed.rendering
        host = request.get_host()  # validated against ALLOWED_HOSTS: a bad one is a 400
        tag = _etag(f"{request.catalog_version}|{request.scheme}://{host}|{parsed.page}")
        if_none_match = request.META.get("HTTP_IF_NONE_MATCH")
        if if_none_match and tag in parse_etags(if_none_match):
            return HttpResponseNotModified(headers={"ETag": tag, **_static_headers()})
        key = "cars:response:" + tag.strip('"')
        store = _one_spelling(request, host)
        # An anonymous rate limit (CARS_ANON_RATE) must see every request: a cached page
        # is served only to a client that is surely anonymous, once the throttle let it
        # through; one that may be signed in (a session cookie, an Authorization header,
        # real or not) goes to the view, whose DRF throttles judge it.
        throttles = api_settings.DEFAULT_THROTTLE_CLASSES
        served = store and not (throttles and _may_be_signed_in(request))
        cached = cache.get(key) if served else None
        if cached is not None:
            refused = _throttled(request, throttles) if throttles else None
            if refused is not None:
                return refused
            content, headers = cached
            return HttpResponse(content, headers=_finished_headers(headers, tag))
        response = self.get_response(request)  # rendered already (the handler renders)
        if store and response.status_code == 200 and not response.streaming:
            cache.set(key, (response.content, dict(response.items())), CACHE_SECONDS)
        return _finish(response, tag) if response.status_code < 500 else response


def _may_be_signed_in(request: HttpRequest) -> bool:
    return settings.SESSION_COOKIE_NAME in request.COOKIES or "HTTP_AUTHORIZATION" in request.META


def _throttled(request: HttpRequest, throttles) -> HttpResponse | None:
    """DRF's 429 for an anonymous client over its rate, as the view would answer it; None
    when every throttle lets the request through (and counts it)."""
    request.user = AnonymousUser()  # surely anonymous (_may_be_signed_in), as DRF sees it
    for throttle in (cls() for cls in throttles):
        if not throttle.allow_request(request, None):
            wait = throttle.wait()
            response = JsonResponse({"detail": str(Throttled(wait).detail)}, status=429)
            if wait is not None:
                response["Retry-After"] = str(math.ceil(wait))
            return response
    return None


@dataclass(frozen=True)
class ParsedRequest:
    """A request as its view reads it."""

    page: str  # what the response depends on besides the version and origin, one spelling
    query: object  # the view's parsed query (cars.api.query)
    rendering: tuple  # DRF's negotiated (renderer, media type)


class ParsedRequests:
    """Each spelling of a request (path, query string, Accept) parsed once per process:
    popular pages are asked for again and again, and routing, parsing and DRF's
    negotiation cost a hit more than everything else the middleware does. A bounded LRU,
    so a flood of spellings costs CPU, never memory; forgotten whenever a setting changes
    (tests), since page sizes and renderers are settings."""

    def __init__(self, size: int):
        self._size = size
        self._parsed: OrderedDict[tuple, ParsedRequest | None] = OrderedDict()
        self._lock = threading.Lock()  # gunicorn's threads share the process

    def get(self, request: HttpRequest) -> ParsedRequest | None:
        meta = request.META
        spelling = (request.path_info, meta.get("QUERY_STRING", ""), meta.get("HTTP_ACCEPT"))
        with self._lock:
            if spelling in self._parsed:
                self._parsed.move_to_end(spelling)
                return self._parsed[spelling]
        parsed = _parse(request)
        with self._lock:
            self._parsed[spelling] = parsed
            if len(self._parsed) > self._size:
                self._parsed.popitem(last=False)
        return parsed

    def clear(self, **kwargs) -> None:
        with self._lock:
            self._parsed.clear()

    def __len__(self) -> int:
        return len(self._parsed)


PARSED = ParsedRequests(256)
setting_changed.connect(PARSED.clear, dispatch_uid="cars.api.caching.PARSED")


def _parse(request: HttpRequest) -> ParsedRequest | None:
    """None when this request is not a page to key: an unknown URL, a parameter the view
    refuses, no acceptable renderer."""
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    view_class = getattr(match.func, "view_class", None)
    parse = getattr(view_class, "parse_query", None)
    if parse is None:
        return None
    try:
        query = parse(request.GET)
        view = view_class(**match.func.view_initkwargs)
        renderer, media_type = view.get_content_negotiator().select_renderer(
            Request(request), view.get_renderers()
        )
    except (APIException, Http404):  # 400; 406, or 404 for an unknown `?format=`
        return None
    # Of the media type's parameters only what changes the bytes: JSON's indent (0-8).
    get_indent = getattr(renderer, "get_indent", None)
    indent = get_indent(media_type, {}) if get_indent else None
    arguments = sorted(match.kwargs.items())
    page = f"{match.view_name}{arguments}?{urlencode(query.params())}|{renderer.format}:{indent}"
    return ParsedRequest(page, query, (renderer, media_type))


def _one_spelling(request: HttpRequest, host: str) -> bool:
    """Whether the Host header is its name's one spelling: lower case, with no port or
    the one the request came to. Django accepts any port and any case for an allowed
    name, and the page's URLs repeat them, so every other spelling is answered but not
    stored."""
    domain = split_domain_port(host)[0]
    return host == domain or host == f"{domain}:{request.get_port()}"


@functools.lru_cache(maxsize=4096)  # the popular pages of the current version, per process
def _etag(key: str) -> str:
    return '"' + hashlib.blake2b(key.encode(), digest_size=12).hexdigest() + '"'


def _finish(response: HttpResponse, tag: str) -> HttpResponse:
    response["ETag"] = tag
    response["Cache-Control"] = _static_headers()["Cache-Control"]
    patch_vary_headers(response, ("Accept",))  # the indent (and 406) follow it
    return response


@functools.cache
def _static_headers() -> dict[str, str]:
    """What every answer of this middleware carries besides its ETag, made once per
    settings (forgotten when one changes) rather than once per request."""
    max_age = settings.CARS_API_MAX_AGE
    revalidate = ", must-revalidate" if max_age == 0 else ""
    return {"Cache-Control": f"public, max-age={max_age}{revalidate}", "Vary": "Accept"}


setting_changed.connect(
    lambda **kwargs: _static_headers.cache_clear(),
    weak=False,
    dispatch_uid="cars.api.caching.static",
)


def _finished_headers(stored: dict[str, str], tag: str) -> dict[str, str]:
    """A stored page's headers as `_finish` leaves them, without patching a response
    header by header: what a cached page costs is mostly such per-request work."""
    return {
        **stored,
        "ETag": tag,
        "Cache-Control": _static_headers()["Cache-Control"],
        "Vary": _vary_with_accept(stored.get("Vary")),
    }


@functools.lru_cache(maxsize=64)  # the view's Vary values: one or two
def _vary_with_accept(vary: str | None) -> str:
    response = HttpResponse()
    if vary:
        response["Vary"] = vary
    patch_vary_headers(response, ("Accept",))
    return response["Vary"]

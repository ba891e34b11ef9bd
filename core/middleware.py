"""Request id and one log line per request: method, path, status, duration.

The request id is django-guid's (its context variable and log filter put it on every line
logged while serving the request), taken from `X-Request-ID` or made anew, and echoed
in the response. It is set here rather than by django-guid's own middleware, which
costs a cached API response about a third of its time: it builds `request.headers` and
the full path twice per request only to look up one header and an empty ignore list.
"""

import logging
import os
import re
import time

from django_guid.context import guid

logger = logging.getLogger("image_backend.requests")

HEADER = "X-Request-ID"
# What a client may pass as its request id: printable ASCII without spaces, bounded.
_ACCEPTED_ID = re.compile(r"[!-~]{1,200}")


def request_id(given: str | None) -> str:
    """The client's id when it is sane, else a new one: 128 random bits in hex."""
    if given and _ACCEPTED_ID.fullmatch(given):
        return given
    return os.urandom(16).hex()


class RequestLogMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        token = guid.set(request_id(request.META.get("HTTP_X_REQUEST_ID")))
        try:
            response = self.get_response(request)
            response[HEADER] = guid.get()
            if logger.isEnabledFor(logging.INFO):
                self.log(request, response, started)
            return response
        finally:
            guid.reset(token)

    @staticmethod
    def log(request, response, started: float) -> None:
        logger.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )

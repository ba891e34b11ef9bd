"""The OpenSearch client (opensearch-py, the engine's official one), and what it means
for the engine to be unavailable.

A search must answer even when the engine does not: every failure to ask it becomes
`EngineUnavailable`, which the callers turn into an answer from the database. After a
connection failure the engine is left alone for `RETRY_AFTER` seconds, so that while it
is down each search costs no connection attempt (nor, when it hangs, a timeout).
"""

import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from django.conf import settings
from opensearchpy import OpenSearch
from opensearchpy.exceptions import ConnectionError as EngineConnectionError
from opensearchpy.exceptions import NotFoundError, OpenSearchException

logger = logging.getLogger("cars.search")

RETRY_AFTER = 10.0  # seconds without asking an engine that did not answer
PING_TIMEOUT = 2.0
T = TypeVar("T")
_down_until: dict[str, float] = {}  # SEARCH_URL → monotonic time


class EngineUnavailable(Exception):
    """The engine did not answer, or has no index yet: the database answers instead."""


def configured() -> bool:
    return bool(settings.SEARCH_URL)


def index_alias() -> str:
    return settings.SEARCH_INDEX


def client(*, timeout: float | None = None) -> OpenSearch:
    """The client of the current settings; `timeout` (seconds) for work longer than a
    search, which is what SEARCH_TIMEOUT bounds."""
    return _client(settings.SEARCH_URL, max(timeout or 0.0, settings.SEARCH_TIMEOUT))


@lru_cache(maxsize=8)
def _client(url: str, timeout: float) -> OpenSearch:
    """One client (and its connection pool) per process and configuration. A URL with
    credentials (https://user:password@host) logs in with them."""
    return OpenSearch(hosts=[url], timeout=timeout, max_retries=1, retry_on_timeout=False)


def ask(request: Callable[[OpenSearch], T]) -> T:
    """Run `request` against the engine; raise EngineUnavailable when it cannot answer."""
    url = settings.SEARCH_URL
    if _down_until.get(url, 0.0) > time.monotonic():
        raise EngineUnavailable("the search engine did not answer a moment ago")
    try:
        return request(client())
    except EngineConnectionError as exc:  # refused, reset, timed out
        _down_until[url] = time.monotonic() + RETRY_AFTER
        raise EngineUnavailable(f"the search engine does not answer: {exc}") from exc
    except NotFoundError as exc:
        raise EngineUnavailable(
            f"no search index {index_alias()!r}: run `manage.py search_index --rebuild`"
        ) from exc
    except OpenSearchException as exc:
        raise EngineUnavailable(f"the search engine failed: {exc}") from exc


def ping() -> None:
    """Raise unless the engine answers (for /readyz): asked even while it is marked down,
    within a probe's patience."""
    client().info(request_timeout=min(settings.SEARCH_TIMEOUT, PING_TIMEOUT))

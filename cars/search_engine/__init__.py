"""Search behind one seam: the database (`cars.search`) or OpenSearch (`SEARCH_URL`).

The API, the gallery and the admin ask this module and never know which engine
answered. Both speak `cars.search.Search` (a query's words, and for each word the
catalogue lacks its near words, from which `X-Search-Corrected` is spelled), so the
database can answer any part of a search the engine could not.

A backend (`backend()`) offers:
- `understand(query) -> Search`: the words, and the corrections;
- `count(search) -> int`: how many cars match;
- `ranked(queryset, search, fields)`: the matching cars as dicts of `fields`, best match
  first, read by slices (what paginators do);
- `matching(queryset, search) -> QuerySet`: every matching car, unordered (an explicit
  ordering sorts them, the admin lists them).

Writes reach the engine through `index_on_commit` and `indexing_writes` (called by
`cars.services`, the one writer of cars); `search_index --rebuild` rebuilds it.
"""

from typing import Protocol

from django.db.models import QuerySet

from cars.search import Search

from .client import EngineUnavailable, configured, ping
from .database import DATABASE
from .indexing import index_on_commit, indexing_writes, rebuild
from .opensearch import OpenSearchSearch

__all__ = [
    "EngineUnavailable",
    "SearchBackend",
    "backend",
    "index_on_commit",
    "indexing_writes",
    "matching",
    "ping",
    "rebuild",
    "understand",
]


class SearchBackend(Protocol):
    name: str

    def understand(self, query: str) -> Search: ...

    def count(self, search: Search) -> int: ...

    def ranked(self, queryset: QuerySet, search: Search, fields: tuple[str, ...]): ...

    def matching(self, queryset: QuerySet, search: Search) -> QuerySet: ...


_OPENSEARCH = OpenSearchSearch()


def backend() -> SearchBackend:
    """The engine of the current settings (read per call: tests switch them)."""
    return _OPENSEARCH if configured() else DATABASE


def understand(query: str) -> Search:
    return backend().understand(query)


def matching(queryset: QuerySet, search: Search | str) -> QuerySet:
    """The cars of `queryset` that `search` finds, in no particular order."""
    if isinstance(search, str):
        search = understand(search)
    if not search.words:
        return queryset.none()
    return backend().matching(queryset, search)

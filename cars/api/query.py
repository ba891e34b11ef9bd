"""What a cars request asks for: its parameters parsed once, in their one spelling.

CatalogCacheMiddleware parses them before the view (they are its cache key and ETag) and
leaves the result on the request; the view reads it from there. Only what a view reads
counts: an unknown parameter is ignored, as DRF ignores one, so it never makes a new
cache entry; a default written out (`limit=100`, `ordering=id`) is the page without it.
"""

from dataclasses import dataclass

from django.http import HttpRequest, QueryDict

from cars.selectors import ORDERING_FIELDS
from core.pagination import BadRequest, Ordering, PageRequest, parse_page_request


@dataclass(frozen=True)
class CarQuery:
    """A car (detail) reads no parameter."""

    def params(self) -> list[tuple[str, str]]:
        return []


@dataclass(frozen=True)
class ListQuery:
    page: PageRequest
    search: str  # stripped; "" lists everything
    ordering: Ordering | None  # None: best match first (a search without `ordering`)

    def params(self) -> list[tuple[str, str]]:
        """Every parameter that makes the page, in one order, defaults written out (the
        limit, and `ordering=id` unless ranked by relevance), as the page's links carry
        them."""
        params = self.page.params()
        if self.search:
            params.append(("search", self.search))
        if self.ordering is not None:
            params.append(("ordering", str(self.ordering)))
        return params


def parse_car_query(params: QueryDict) -> CarQuery:
    return CarQuery()


def parse_list_query(params: QueryDict) -> ListQuery:
    """Raises BadRequest (400) for a value the list cannot take (SPEC §6)."""
    search = params.get("search", "").strip()
    ordering = _ordering(params.get("ordering"), search)
    return ListQuery(parse_page_request(params, ordering=ordering), search, ordering)


def _ordering(raw: str | None, search: str) -> Ordering | None:
    if raw is None or raw == "":
        return None if search else Ordering("id")
    try:
        return Ordering.parse(raw, ORDERING_FIELDS)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def parsed_query(request: HttpRequest, parse):
    """The query CatalogCacheMiddleware parsed for this request, else `parse(request.GET)`
    (a request that came another way: a test's view call, a middleware order changed)."""
    query = getattr(request, "cars_query", None)
    return query if query is not None else parse(request.GET)

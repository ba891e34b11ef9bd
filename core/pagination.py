"""Array-body pagination: `?limit=` with `?offset=` or an opaque keyset `?cursor=`.

The page stays a plain JSON array; navigation is in the `Link` header (rel="next",
rel="prev") and the total in `X-Total-Count`. Without `offset`, links carry a keyset
cursor, so deep pages cost what the first page costs.

Every list of the API pages this way (the cars, the import jobs, a job's problems), so it
lives here, below the apps: an app says which fields it may be ordered by, this module
does the rest.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q, QuerySet
from django.http import QueryDict
from rest_framework.exceptions import APIException

MAX_INT = 2**63 - 1  # what a database integer holds


class BadRequest(APIException):
    status_code = 400
    default_detail = "Bad request."
    default_code = "bad_request"


# Orderings whose cursor value is a point in time (Django's usual names for timestamps).
DATETIME_FIELDS = frozenset({"updated_at", "created_at"})


@dataclass(frozen=True)
class Ordering:
    field: str
    descending: bool = False

    @classmethod
    def parse(cls, value: str, fields: tuple[str, ...]) -> "Ordering":
        """`title`, `-updated_at`, … for one of `fields`; raises ValueError otherwise."""
        descending = value.startswith("-")
        field = value.removeprefix("-")
        if field not in fields:
            raise ValueError(f"ordering must be one of {', '.join(fields)} (or -field)")
        return cls(field, descending)

    def order_by(self) -> list[str]:
        sign = "-" if self.descending else ""
        keys = [f"{sign}{self.field}"]
        if self.field != "id":
            keys.append(f"{sign}id")  # a unique tie-breaker keeps pages stable
        return keys

    def __str__(self) -> str:
        return ("-" if self.descending else "") + self.field


def encode_token(values: list) -> str:
    """An opaque cursor: JSON in unpadded URL-safe base64."""
    raw = json.dumps(values, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str) -> object:
    """What `encode_token` wrapped, or BadRequest (400). Only the wrapping is checked
    here (a deeply nested list exhausts the JSON parser's recursion): what the values
    may be is the caller's to check."""
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, RecursionError, binascii.Error) as exc:
        raise BadRequest("cursor is not valid") from exc


@dataclass(frozen=True)
class Cursor:
    value: object  # the ordering field's value of the item the page starts after
    pk: int
    reverse: bool = False  # True: the page ends before that item (a "prev" page)

    def encode(self) -> str:
        value = self.value.isoformat() if isinstance(self.value, datetime) else self.value
        return encode_token([value, self.pk, int(self.reverse)])

    @classmethod
    def decode(cls, token: str, ordering: Ordering) -> "Cursor":
        """The position a token names, or BadRequest (400).

        A token is the client's: every value a database could refuse is refused here
        (PostgreSQL takes no NUL in text and no time zone offset beyond ±15:59, no driver
        encodes a lone surrogate, and a deeply nested list exhausts the JSON parser's
        recursion). A time must be in UTC, as every cursor this API writes is: a cursor
        in another offset is not one of ours. An id ordering's position is the id: two
        spellings of one position decode equal, as the cache key is the decoded cursor.
        """
        decoded = decode_token(token)
        try:
            value, pk, reverse = decoded
            if type(pk) is not int or not 0 <= pk <= MAX_INT or reverse not in (0, 1):
                raise TypeError
            return cls(_position_value(value, ordering, pk), pk, bool(reverse))
        except (ValueError, TypeError, OverflowError) as exc:
            raise BadRequest("cursor is not valid") from exc


def _position_value(value: object, ordering: Ordering, pk: int) -> object:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("NUL in a cursor")
    if ordering.field == "id":
        int(value)  # a number, though the id alone places the page
        return pk
    if ordering.field in DATETIME_FIELDS:
        moment = datetime.fromisoformat(value)
        if moment.utcoffset() != timedelta(0):  # None (no offset) too
            raise ValueError("a cursor's time is in UTC")
        return moment.astimezone(UTC)
    if not isinstance(value, str):
        raise TypeError
    value.encode()  # UnicodeEncodeError (a ValueError) for a lone surrogate
    return value


@dataclass(frozen=True)
class PageRequest:
    limit: int
    offset: int | None  # None: keyset pages (a cursor, or the first page)
    cursor: Cursor | None

    def params(self) -> list[tuple[str, str]]:
        """The paging parameters in their one spelling: the default limit written out
        (as DRF's links do), and offset or cursor."""
        params = [("limit", str(self.limit))]
        if self.offset is not None:
            params.append(("offset", str(self.offset)))
        if self.cursor is not None:
            params.append(("cursor", self.cursor.encode()))
        return params


def non_negative_int(params: QueryDict, name: str) -> int | None:
    """A paging parameter (`limit`, `offset`) as a database can take it, None if absent."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer") from None
    if value < 0:
        raise BadRequest(f"{name} must not be negative")
    if value > MAX_INT:
        raise BadRequest(f"{name} is too large")
    return value


def parse_limit(params: QueryDict) -> int:
    """The page size asked for, CARS_PAGE_SIZE by default, at most CARS_MAX_PAGE_SIZE."""
    limit = non_negative_int(params, "limit")
    maximum = settings.CARS_MAX_PAGE_SIZE
    if limit is None:
        return settings.CARS_PAGE_SIZE
    if not 1 <= limit <= maximum:
        raise BadRequest(f"limit must be between 1 and {maximum}")
    return limit


def parse_page_request(params: QueryDict, *, ordering: Ordering | None) -> PageRequest:
    """`ordering` None: ranked by relevance, where only offsets page (no cursor)."""
    limit = parse_limit(params)
    offset = non_negative_int(params, "offset")
    token = params.get("cursor")
    if token is None:
        return PageRequest(limit, 0 if ordering is None and offset is None else offset, None)
    if offset is not None:
        raise BadRequest("use either offset or cursor, not both")
    if ordering is None:
        raise BadRequest("cursor cannot be combined with a search ranked by relevance")
    # An empty cursor is the first page, as no cursor is.
    return PageRequest(limit, None, Cursor.decode(token, ordering) if token else None)


@dataclass
class Page:
    items: list[dict]
    next_params: dict[str, str] | None
    prev_params: dict[str, str] | None


def paginate(
    rows: QuerySet, request: PageRequest, *, ordering: Ordering | None, total: int
) -> Page:
    """Slice `rows`; keyset when possible, offset for searches ranked by relevance."""
    if request.offset is None and ordering is not None:
        return _keyset_page(rows, request, ordering)
    return _offset_page(rows, request, total)


def _offset_page(rows: QuerySet, request: PageRequest, total: int) -> Page:
    offset, limit = request.offset or 0, request.limit
    items = list(rows[offset : offset + limit])
    next_params = {"offset": str(offset + limit)} if offset + limit < total else None
    prev_params = {"offset": str(max(0, offset - limit))} if offset > 0 else None
    return Page(items, next_params, prev_params)


def _keyset_page(rows: QuerySet, request: PageRequest, ordering: Ordering) -> Page:
    limit, cursor = request.limit, request.cursor
    if cursor is not None:
        rows = rows.filter(_after(ordering, cursor))
        if cursor.reverse:
            rows = rows.reverse()
    items = list(rows[: limit + 1])
    more = len(items) > limit
    items = items[:limit]
    if cursor is not None and cursor.reverse:
        items.reverse()
        has_prev, has_next = more, True
    else:
        has_prev, has_next = cursor is not None, more
    next_params = prev_params = None
    if items and has_next:
        next_params = {"cursor": _cursor_at(items[-1], ordering, reverse=False).encode()}
    if items and has_prev:
        prev_params = {"cursor": _cursor_at(items[0], ordering, reverse=True).encode()}
    return Page(items, next_params, prev_params)


def _cursor_at(item: dict, ordering: Ordering, *, reverse: bool) -> Cursor:
    return Cursor(item[ordering.field], item["id"], reverse)


def _after(ordering: Ordering, cursor: Cursor) -> Q:
    """Rows strictly after the cursor in the page direction."""
    forward = ordering.descending == cursor.reverse
    op = "gt" if forward else "lt"
    if ordering.field == "id":
        return Q(**{f"id__{op}": cursor.pk})
    return Q(**{f"{ordering.field}__{op}": cursor.value}) | Q(
        **{ordering.field: cursor.value, f"id__{op}": cursor.pk}
    )


def link_header(request, page: Page, params: list[tuple[str, str]]) -> str:
    """GitHub-style `Link` header for a page: the request's path with the page's own
    parameters (`params`, in their one spelling, offset and cursor swapped for the
    neighbour's). Parameters the view does not read are left out: they would make
    equal pages differ."""
    kept = [(name, value) for name, value in params if name not in ("offset", "cursor")]
    links = []
    for rel, neighbour in (("next", page.next_params), ("prev", page.prev_params)):
        if neighbour is not None:
            query = urlencode([*kept, *neighbour.items()])
            links.append(f'<{request.build_absolute_uri("?" + query)}>; rel="{rel}"')
    return ", ".join(links)

"""Offset pages for the gallery: Django's Paginator, told the total instead of counting."""

from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlencode

from django.core.paginator import Page, Paginator


class CountedPaginator(Paginator):
    """A Paginator whose total comes from `count_cars` (cached per catalogue version),
    so a page costs one query for its rows and none for the count."""

    def __init__(self, object_list, per_page: int, *, count: int) -> None:
        super().__init__(object_list, per_page)
        self._known_count = count

    @cached_property
    def count(self) -> int:
        return self._known_count


@dataclass(frozen=True)
class PageLink:
    label: str
    url: str | None  # None: the current page, or an ellipsis
    current: bool = False


@dataclass(frozen=True)
class PageLinks:
    previous: str | None
    next: str | None
    pages: list[PageLink]


def page_url(path: str, number: int, *, search: str) -> str:
    """`path` with the search and the page number, each left out when it is the default.

    A card links to its car's page with the grid's own query (`path` the car's), so the
    car's page can lead back to the very page the visitor came from."""
    params = {}
    if search:
        params["search"] = search
    if number > 1:
        params["page"] = number
    return f"{path}?{urlencode(params)}" if params else path


def page_number(value: str | None) -> int:
    """A page number from a query string: 1 for anything that is not a positive integer
    (the paginator itself clamps one past the end)."""
    try:
        number = int(value or 1)
    except ValueError:
        return 1
    return max(number, 1)


def page_links(page: Page, *, path: str, search: str) -> PageLinks:
    """Previous/next and numbered links that keep the search; long ranges are elided."""
    pages = []
    for number in page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1):
        if number == page.paginator.ELLIPSIS:
            pages.append(PageLink(str(number), None))
        elif number == page.number:
            pages.append(PageLink(str(number), None, current=True))
        else:
            pages.append(PageLink(str(number), page_url(path, number, search=search)))
    return PageLinks(
        previous=page_url(path, page.number - 1, search=search) if page.has_previous() else None,
        next=page_url(path, page.number + 1, search=search) if page.has_next() else None,
        pages=pages if page.paginator.num_pages > 1 else [],
    )

"""The gallery page: parse the query, ask the selectors, render. Nothing else."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from cars.catalog import catalog_version
from cars.rendition_urls import RenditionUrls
from cars.search_engine import understand
from cars.selectors import GALLERY_FIELDS, car_rows, count_cars
from core.throttling import GalleryThrottle

from .cards import card_from_row
from .paging import CountedPaginator, page_links

PAGE_SIZE = 24  # two, three and four columns all come out even


def index(request: HttpRequest) -> HttpResponse:
    throttle = GalleryThrottle()
    if not throttle.allow_request(request, None):
        return too_many_requests(throttle.wait())
    search = request.GET.get("search", "").strip()
    understood = understand(search) if search else ""
    rows = car_rows(search=understood, fields=GALLERY_FIELDS)
    total = count_cars(search=understood, version=catalog_version())
    page = CountedPaginator(rows, PAGE_SIZE, count=total).get_page(request.GET.get("page"))
    urls = RenditionUrls()
    context = {
        "search": search,
        "corrected": understood.corrected if understood else None,
        "total": total,
        "page": page,
        "cards": [card_from_row(row, urls) for row in page],
        "links": page_links(page, path=request.path, search=search),
    }
    return render(request, "gallery/index.html", context)


def too_many_requests(wait: float | None) -> HttpResponse:
    seconds = max(1, round(wait or 1))
    response = HttpResponse(
        f"Too many requests: try again in {seconds} s.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response

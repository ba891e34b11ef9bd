"""The gallery pages: parse the query, ask the selectors, render. Nothing else."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from cars.catalog import catalog_version
from cars.pictures.urls import RenditionUrls
from cars.search_engine import understand
from cars.selectors import GALLERY_FIELDS, car_detail, car_rows, count_cars
from core.throttling import GalleryThrottle

from .cards import car_page_from_detail, card_from_row
from .paging import CountedPaginator, page_links, page_number, page_url

PAGE_SIZE = 24  # two, three and four columns all come out even


def index(request: HttpRequest) -> HttpResponse:
    if refused := throttled(request):
        return refused
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
        "keep": page_url("", page.number, search=search),  # for the cards' links
    }
    return render(request, "gallery/index.html", context)


def car(request: HttpRequest, pk: int) -> HttpResponse:
    """One car: every picture in feed order, its description and attributes (SPEC §7).

    The query the card was opened with (`search`, `page`) comes along, so the page links
    back to the grid the visitor came from."""
    if refused := throttled(request):
        return refused
    search = request.GET.get("search", "").strip()
    number = page_number(request.GET.get("page"))
    context = {
        "search": search,
        "back": page_url(reverse("gallery:index"), number, search=search),
    }
    row = car_detail(pk)
    if row is None:  # a link to a car the catalogue no longer has
        return render(request, "gallery/no_car.html", context, status=404)
    context["car"] = car_page_from_detail(row, RenditionUrls())
    return render(request, "gallery/car.html", context)


def throttled(request: HttpRequest) -> HttpResponse | None:
    """A 429 when the client is over the gallery's rate (one budget for all its pages)."""
    throttle = GalleryThrottle()
    if throttle.allow_request(request, None):
        return None
    return too_many_requests(throttle.wait())


def too_many_requests(wait: float | None) -> HttpResponse:
    seconds = max(1, round(wait or 1))
    response = HttpResponse(
        f"Too many requests: try again in {seconds} s.\n",
        status=429,
        content_type="text/plain; charset=utf-8",
    )
    response["Retry-After"] = str(seconds)
    return response

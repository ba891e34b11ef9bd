"""Reading the catalogue: the queries behind the API, the admin and the gallery."""

import hashlib

from django.core.cache import cache
from django.db.models import F, JSONField, QuerySet
from django.db.models.functions import Coalesce

from core.pagination import Ordering

from .models import Car, CarPicture
from .search import Search
from .search_engine import backend, understand

# A car's renditions are its picture's; cars not yet moved by `migrate_pictures` still
# show their own files (the layout before pictures by content).
RENDITIONS = Coalesce(F("picture__renditions"), F("legacy_renditions"), output_field=JSONField())
LIST_FIELDS = ("id", "title", "description", "renditions")
DETAIL_FIELDS = (
    *LIST_FIELDS,
    "source_image_url",
    "image_error",
    "created_at",
    "updated_at",
    "attributes",
    "description_html",
    "picture_id",
)
GALLERY_FIELDS = (*LIST_FIELDS, "image_status", "image_error")
# What the cars list may be ordered by (`?ordering=`, or `-field` for descending).
ORDERING_FIELDS = ("id", "title", "updated_at")
COUNT_CACHE_SECONDS = 3600
SEARCH_CACHE_SECONDS = 3600


def car_rows(
    *,
    search: str | Search = "",
    ordering: Ordering | None = None,
    fields: tuple[str, ...] = LIST_FIELDS,
) -> QuerySet:
    """Cars as dicts of `fields`; best match first when searching without ordering.

    The gallery asks for GALLERY_FIELDS: it also says why a car has no picture. `search`
    may be a query already understood (`cars.search_engine.understand`), as views do to
    tell what was corrected. Best-first results are read by slices (the search engine
    may answer them a page at a time); everything else is a QuerySet.
    """
    queryset = Car.objects.annotate(renditions=RENDITIONS)
    if search:
        search = understand(search) if isinstance(search, str) else search
        if not search.words:
            return queryset.none().values(*fields)
        if ordering is None:
            return backend().ranked(queryset, search, fields)
        queryset = backend().matching(queryset, search)
    ordering = ordering or Ordering("id")
    # Keyset pagination reads the ordering field of the page's last row.
    if ordering.field not in fields:
        fields = (*fields, ordering.field)
    return queryset.values(*fields).order_by(*ordering.order_by())


def understood(text: str, *, version: int) -> Search:
    """`understand(text)`, cached per catalogue version and engine: paging through a
    search, or coming back to it, asks the vocabulary (or the engine's suggesters: 7-9 ms
    on 1M cars) once. A change to the catalogue bumps the version, so a word it adds or
    removes is seen at once."""
    key = f"cars:understood:{version}:{backend().name}:{_digest(text)}"
    search = cache.get(key)
    if search is None:
        search = understand(text)
        cache.set(key, search, SEARCH_CACHE_SECONDS)
    return search


def _digest(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def count_cars(*, search: str | Search, version: int) -> int:
    """Total for X-Total-Count, cached per catalogue version (every change bumps it)."""
    text = search.text if isinstance(search, Search) else search
    key = f"cars:count:{version}:{_digest(text)}"
    total = cache.get(key)
    if total is None:
        if not search:
            total = Car.objects.count()
        else:
            search = understand(search) if isinstance(search, str) else search
            total = backend().count(search) if search.words else 0
        cache.set(key, total, COUNT_CACHE_SECONDS)
    return total


def car_detail(pk: int) -> dict | None:
    """One car with its `pictures`: two queries, whatever it has."""
    queryset = Car.objects.annotate(renditions=RENDITIONS).filter(pk=pk)
    row = queryset.values(*DETAIL_FIELDS).first()
    if row is not None:
        row["pictures"] = _pictures(row)
    return row


def _pictures(car: dict) -> list[dict]:
    """Every picture of the car in feed order, as {"source_url", "error", "renditions"}:
    its own first, then its further ones. Two references to the same bytes are one
    picture (SPEC §3), shown at the first place."""
    pictures = []
    if car["source_image_url"] or car["renditions"]:
        pictures.append(
            {
                "source_url": car["source_image_url"],
                "error": car["image_error"],
                "renditions": car["renditions"],
            }
        )
    shown = {car["picture_id"]}
    further = CarPicture.objects.filter(car_id=car["id"]).order_by("position")
    for source_url, error, picture_id, renditions in further.values_list(
        "source_url", "error", "picture_id", "picture__renditions"
    ):
        if picture_id and picture_id in shown:
            continue
        shown.add(picture_id)
        pictures.append({"source_url": source_url, "error": error, "renditions": renditions})
    return pictures

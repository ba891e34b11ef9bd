"""Cars API views: parse the request, call a selector, serialize. Nothing else."""

from urllib.parse import quote

from django.conf import settings
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cars.catalog import catalog_version
from cars.pictures.platforms import DEFAULT_PLATFORM, get_platforms
from cars.pictures.urls import RenditionUrls
from cars.selectors import car_detail, car_rows, count_cars, understood
from core.pagination import MAX_INT, link_header, paginate
from core.serializers import ErrorSerializer

from .query import parse_car_query, parse_list_query, parsed_query
from .serializers import CarDetailSerializer, CarSerializer


def _platform(name: str) -> str:
    if name not in get_platforms():
        raise NotFound(f"unknown platform {name!r}; known: {', '.join(get_platforms())}")
    return name


class ReadOnlyCarView(APIView):
    """Public, read-only: any write answers 405, whoever asks.

    ETags, Cache-Control and the response cache are added around these views by
    cars.api.caching.CatalogCacheMiddleware, so a cached page never enters DRF. It keys
    a page on `parse_query` (what the view reads of the query string) and on the
    renderer it negotiates, and hands both to the view.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parse_query = staticmethod(parse_car_query)

    def perform_content_negotiation(self, request, force=False):
        negotiated = getattr(request, "cars_rendering", None)  # the cache middleware's
        return negotiated or super().perform_content_negotiation(request, force)


class CarListQuery(serializers.Serializer):
    """The list's query parameters, for the OpenAPI schema (parsed in query.py)."""

    limit = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=settings.CARS_MAX_PAGE_SIZE,
        help_text="page size (default CARS_PAGE_SIZE)",
    )
    offset = serializers.IntegerField(
        required=False, min_value=0, max_value=MAX_INT, help_text="rows to skip"
    )
    cursor = serializers.CharField(
        required=False, allow_blank=True, help_text="opaque token from a Link header"
    )
    search = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=(
            "full-text search over title and description, best match first; a word the "
            "catalogue does not have also matches its words within one or two letters "
            "(see the X-Search-Corrected response header)"
        ),
    )
    ordering = serializers.ChoiceField(
        required=False,
        allow_blank=True,
        choices=["id", "-id", "title", "-title", "updated_at", "-updated_at"],
        help_text="sort key; empty or absent: id (or best match when searching)",
    )


PLATFORM = OpenApiParameter(
    "platform", str, OpenApiParameter.PATH, enum=list(get_platforms()), description="platform"
)
CORRECTED = OpenApiParameter(
    "X-Search-Corrected",
    str,
    OpenApiParameter.HEADER,
    response=[200],
    description=(
        "Only when `search` had a word the catalogue does not have: the query as searched, "
        "each such word replaced by the nearest catalogue word (`aurra` → `aurora`), "
        "percent-encoded UTF-8."
    ),
)
ERRORS = {
    304: OpenApiResponse(description="not modified (If-None-Match matched the ETag)"),
    400: OpenApiResponse(ErrorSerializer, description="bad query parameter"),
    404: OpenApiResponse(ErrorSerializer, description="unknown platform or car"),
}


class CarListView(ReadOnlyCarView):
    parse_query = staticmethod(parse_list_query)

    @extend_schema(
        parameters=[CarListQuery, CORRECTED],
        responses={200: CarSerializer(many=True), **ERRORS},
        summary="List cars with the rendition for a platform",
    )
    def get(self, request, platform: str = DEFAULT_PLATFORM):
        platform = _platform(platform)
        query = parsed_query(request, self.parse_query)
        version = getattr(request, "catalog_version", None) or catalog_version()
        search = understood(query.search, version=version) if query.search else ""
        total = count_cars(search=search, version=version)
        page = paginate(
            car_rows(search=search, ordering=query.ordering),
            query.page,
            ordering=query.ordering,
            total=total,
        )
        context = {"urls": RenditionUrls(request.build_absolute_uri), "platform": platform}
        response = Response(CarSerializer(page.items, many=True, context=context).data)
        response["X-Total-Count"] = str(total)
        if link := link_header(request, page, query.params()):
            response["Link"] = link
        if search and search.corrected:
            response["X-Search-Corrected"] = quote(search.corrected, safe=" ")
        return response


@extend_schema_view(
    get=extend_schema(
        operation_id="cars_platform_list", parameters=[CarListQuery, PLATFORM, CORRECTED]
    )
)
class CarPlatformListView(CarListView):
    """The same list, with `image` rendered for the platform in the path."""


class CarDetailView(ReadOnlyCarView):
    @extend_schema(
        responses={200: CarDetailSerializer, **ERRORS}, summary="One car with every rendition"
    )
    def get(self, request, pk: int, platform: str = DEFAULT_PLATFORM):
        platform = _platform(platform)
        row = car_detail(pk)
        if row is None:
            raise NotFound("no such car")
        context = {"urls": RenditionUrls(request.build_absolute_uri), "platform": platform}
        return Response(CarDetailSerializer(row, context=context).data)


@extend_schema_view(get=extend_schema(operation_id="cars_platform_retrieve", parameters=[PLATFORM]))
class CarPlatformDetailView(CarDetailView):
    """The same car, with `image` rendered for the platform in the path."""

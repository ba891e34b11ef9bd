"""Cars API views: parse the request, call a selector, serialize. Nothing else."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from cars.catalog import catalog_version
from cars.platforms import DEFAULT_PLATFORM, get_platforms
from cars.selectors import Ordering, car_detail, car_rows, count_cars

from .pagination import BadRequest, link_header, paginate, parse_page_request
from .serializers import CarDetailSerializer, CarSerializer, RenditionUrls


def _platform(name: str) -> str:
    if name not in get_platforms():
        raise NotFound(f"unknown platform {name!r}; known: {', '.join(get_platforms())}")
    return name


class ReadOnlyCarView(APIView):
    """Public, read-only: any write answers 405, whoever asks.

    ETags, Cache-Control and the response cache are added around these views by
    cars.api.caching.CatalogResponseCacheMiddleware, so a cached page never enters DRF.
    """

    authentication_classes: list = []
    permission_classes = [AllowAny]


LIST_PARAMETERS = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="page size (1 to CARS_MAX_PAGE_SIZE)"),
    OpenApiParameter("offset", OpenApiTypes.INT, description="rows to skip"),
    OpenApiParameter("cursor", OpenApiTypes.STR, description="opaque token from a Link header"),
    OpenApiParameter("search", OpenApiTypes.STR, description="full-text search, best match first"),
    OpenApiParameter(
        "ordering",
        OpenApiTypes.STR,
        enum=["id", "-id", "title", "-title", "updated_at", "-updated_at"],
    ),
]


class CarListView(ReadOnlyCarView):
    @extend_schema(
        parameters=LIST_PARAMETERS,
        responses=CarSerializer(many=True),
        summary="List cars with the rendition for a platform",
    )
    def get(self, request, platform: str = DEFAULT_PLATFORM):
        platform = _platform(platform)
        page_request = parse_page_request(request.GET)
        search = request.GET.get("search", "").strip()
        ordering = _ordering(request.GET.get("ordering"), search)
        version = catalog_version()
        total = count_cars(search=search, version=version)
        page = paginate(
            car_rows(search=search, ordering=ordering),
            page_request,
            ordering=ordering,
            total=total,
        )
        context = {"urls": RenditionUrls(request), "platform": platform}
        response = Response(CarSerializer(page.items, many=True, context=context).data)
        response["X-Total-Count"] = str(total)
        if link := link_header(request, page):
            response["Link"] = link
        return response


@extend_schema_view(get=extend_schema(operation_id="cars_platform_list"))
class CarPlatformListView(CarListView):
    """The same list, with `image` rendered for the platform in the path."""


def _ordering(raw: str | None, search: str) -> Ordering | None:
    if raw is None or raw == "":
        return None if search else Ordering("id")
    try:
        return Ordering.parse(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


class CarDetailView(ReadOnlyCarView):
    @extend_schema(responses=CarDetailSerializer, summary="One car with every rendition")
    def get(self, request, pk: int, platform: str = DEFAULT_PLATFORM):
        platform = _platform(platform)
        row = car_detail(pk)
        if row is None:
            raise NotFound("no such car")
        context = {"urls": RenditionUrls(request), "platform": platform}
        return Response(CarDetailSerializer(row, context=context).data)


@extend_schema_view(get=extend_schema(operation_id="cars_platform_retrieve"))
class CarPlatformDetailView(CarDetailView):
    """The same car, with `image` rendered for the platform in the path."""

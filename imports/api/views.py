"""Imports API views: parse the request, call a service or selector, serialize. Nothing else.

Staff only, by token (`Authorization: Token …`) or by a staff session (CSRF enforced as
DRF does), with the admin's permissions (imports.permissions): reading jobs needs
`imports.view_importjob`, starting one `imports.add_importjob`, and pruning `cars.delete_car`
too. TokenAuthentication comes first so an anonymous request answers 401 with a
`WWW-Authenticate: Token` challenge rather than 403.
"""

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from core.pagination import Ordering, link_header, paginate, parse_page_request
from imports.jobs import submit_job
from imports.lifecycle import create_job
from imports.models import ImportJob
from imports.permissions import PRUNE, may_start_import, may_view_imports
from imports.selectors import job_detail, job_rows

from .serializers import ErrorSerializer, ImportJobSerializer, ImportRequestSerializer

NEWEST_FIRST = Ordering("created_at", descending=True)

ERRORS = {
    401: OpenApiResponse(ErrorSerializer, description="no credentials, or wrong ones"),
    403: OpenApiResponse(
        ErrorSerializer,
        description="not a staff user with the admin's permission for this (or no CSRF token)",
    ),
}


class ImportsPermission(BasePermission):
    """As in the admin: viewing jobs for GET, adding one for POST (pruning is checked once
    the body says whether it is asked)."""

    def has_permission(self, request, view) -> bool:
        if request.method == "POST":
            return may_start_import(request.user)
        return may_view_imports(request.user)


class StaffOnlyView(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [ImportsPermission]


class ImportJobListView(StaffOnlyView):
    @extend_schema(
        parameters=[
            OpenApiParameter("limit", OpenApiTypes.INT, description="page size"),
            OpenApiParameter("offset", OpenApiTypes.INT, description="jobs to skip"),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="token from a Link header"),
            OpenApiParameter(
                "Link",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='rel="next" and rel="prev" pages',
            ),
            OpenApiParameter(
                "X-Total-Count",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[200],
                description="number of jobs",
            ),
        ],
        responses={
            200: ImportJobSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description="bad paging parameters"),
            **ERRORS,
        },
        summary="List import jobs, newest first",
    )
    def get(self, request):
        page_request = parse_page_request(request.GET, ordering=NEWEST_FIRST)
        total = ImportJob.objects.count()
        page = paginate(job_rows(), page_request, ordering=NEWEST_FIRST, total=total)
        context = {"request": request}
        response = Response(ImportJobSerializer(page.items, many=True, context=context).data)
        response["X-Total-Count"] = str(total)
        if link := link_header(request, page, page_request.params()):
            response["Link"] = link
        return response

    @extend_schema(
        request=ImportRequestSerializer,
        parameters=[
            OpenApiParameter(
                "Location",
                OpenApiTypes.URI,
                OpenApiParameter.HEADER,
                response=[202],
                description="URL of the job",
            )
        ],
        responses={
            202: OpenApiResponse(
                ImportJobSerializer,
                description="Job accepted: queued for a worker, or already run when the "
                "service has no Celery broker (REDIS_URL unset).",
            ),
            400: OpenApiResponse(ErrorSerializer, description="the body is not valid"),
            **ERRORS,
        },
        summary="Start an import of a CSV URL",
    )
    def post(self, request):
        serializer = ImportRequestSerializer(data=request.data)
        if not serializer.is_valid():
            raise ValidationError(
                {"detail": _summary(serializer.errors), "errors": serializer.errors}
            )
        data = serializer.validated_data
        if not may_start_import(request.user, prune=data["prune"]):
            raise PermissionDenied(f"prune deletes cars: it needs the {PRUNE} permission")
        job = create_job(
            source=data["source"],
            prune=data["prune"],
            refresh_images=data["refresh_images"],
            trigger=ImportJob.Trigger.API,
            user=request.user,
            column_map=data["map"],
            encoding=data["encoding"],
        )
        submit_job(job)
        url = request.build_absolute_uri(reverse("import-detail", args=[job.pk]))
        data = ImportJobSerializer(job_detail(job.pk), context={"request": request}).data
        return Response(data, status=202, headers={"Location": url})


class ImportJobDetailView(StaffOnlyView):
    @extend_schema(
        responses={
            200: ImportJobSerializer,
            404: OpenApiResponse(ErrorSerializer, description="no such job"),
            **ERRORS,
        },
        summary="One import job",
    )
    def get(self, request, pk: int):
        row = job_detail(pk)
        if row is None:
            raise NotFound("no such import job")
        return Response(ImportJobSerializer(row, context={"request": request}).data)


def _summary(errors: dict) -> str:
    """One readable line out of DRF's per-field errors."""
    parts = []
    for field, messages in errors.items():
        text = "; ".join(str(m) for m in messages)
        parts.append(text if field == "non_field_errors" else f"{field}: {text}")
    return "; ".join(parts)

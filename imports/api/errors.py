"""A job's problems in full: every rejected row and image failure it stored (at most
CARS_JOB_MAX_PROBLEMS of each kind), which the job itself shows only the first of.

`errors/` pages them as JSON by keyset cursor (`Link: rel="next"`, as the cars API), and
`errors.csv` streams them as one CSV download, read from the database a batch at a time:
the memory of either answer does not grow with the job. Who may read them is who may
read the job (imports.view_importjob).
"""

import csv
from collections.abc import Iterable, Iterator

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.response import Response

from core.pagination import (
    MAX_INT,
    BadRequest,
    Page,
    decode_token,
    encode_token,
    link_header,
    non_negative_int,
    parse_limit,
)
from imports.models import ImportProblem
from imports.selectors import ProblemPosition, all_problems, problems_page, stored_problems

from .serializers import ErrorSerializer, ProblemSerializer
from .views import ERRORS, StaffOnlyView

KINDS = {kind.label: kind.value for kind in ImportProblem.Kind}
KIND = OpenApiParameter(
    "kind", OpenApiTypes.STR, enum=list(KINDS), description="only problems of this kind"
)
# Columns of the CSV download; a rejected row has no key nor url.
CSV_COLUMNS = ("kind", "line", "key", "url", "reason", "message")


class ImportJobErrorsView(StaffOnlyView):
    @extend_schema(
        parameters=[
            KIND,
            OpenApiParameter("limit", OpenApiTypes.INT, description="page size"),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="token from a Link header"),
            OpenApiParameter(
                "Link",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='rel="next" page, when there is one',
            ),
            OpenApiParameter(
                "X-Total-Count",
                OpenApiTypes.INT,
                OpenApiParameter.HEADER,
                response=[200],
                description="problems the job stored (of `kind`)",
            ),
        ],
        responses={
            200: ProblemSerializer(many=True),
            400: OpenApiResponse(ErrorSerializer, description="bad kind or paging parameters"),
            404: OpenApiResponse(ErrorSerializer, description="no such job"),
            **ERRORS,
        },
        summary="Every problem a job stored: rejected rows, then image failures, by line",
    )
    def get(self, request, pk: int):
        kinds = _kinds(request.GET)
        # The limit as every list reads it; the cursor is this list's own position.
        limit = parse_limit(request.GET)
        if non_negative_int(request.GET, "offset") is not None:
            raise BadRequest("this list pages by cursor, not offset")
        token = request.GET.get("cursor")
        after = _decode_position(token) if token else None
        total = stored_problems(pk, kinds)
        if total is None:
            raise NotFound("no such import job")
        items = problems_page(pk, kinds=kinds, after=after, limit=limit + 1)
        response = Response(ProblemSerializer(items[:limit], many=True).data)
        response["X-Total-Count"] = str(total)
        if len(items) > limit:
            after = _encode_position(ProblemPosition.of(items[limit - 1]))
            kept = [("limit", str(limit)), *(("kind", k) for k in request.GET.getlist("kind"))]
            page = Page(items[:limit], {"cursor": after}, None)
            response["Link"] = link_header(request, page, kept)
        return response


class JsonErrors(BaseContentNegotiation):
    """A download's body is what it is whatever the client accepts; its errors are JSON."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ImportJobErrorsCsvView(StaffOnlyView):
    content_negotiation_class = JsonErrors

    @extend_schema(
        parameters=[
            KIND,
            OpenApiParameter(
                "Content-Disposition",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=[200],
                description='attachment; filename="import-<id>-errors.csv"',
            ),
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(
                OpenApiTypes.STR,
                description="Columns " + ",".join(CSV_COLUMNS) + ", one line per stored "
                "problem in the order of `errors/`. Cells that a spreadsheet would run as a "
                "formula (starting with = + - @, a tab or a carriage return) begin with '.",
            ),
            400: OpenApiResponse(ErrorSerializer, description="bad kind"),
            404: OpenApiResponse(ErrorSerializer, description="no such job"),
            **ERRORS,
        },
        summary="Every problem a job stored, as a CSV download",
    )
    def get(self, request, pk: int):
        kinds = _kinds(request.GET)
        if stored_problems(pk, kinds) is None:
            raise NotFound("no such import job")
        response = StreamingHttpResponse(
            _csv_lines(all_problems(pk, kinds)), content_type="text/csv; charset=utf-8"
        )
        response["Content-Disposition"] = f'attachment; filename="import-{pk}-errors.csv"'
        return response


def _kinds(params) -> list[int]:
    name = params.get("kind")
    if name is None:
        return list(KINDS.values())
    if name not in KINDS:
        raise BadRequest("kind must be one of " + ", ".join(KINDS))
    return [KINDS[name]]


def _encode_position(position: ProblemPosition) -> str:
    return encode_token([position.kind, position.line, position.id])


def _decode_position(token: str) -> ProblemPosition:
    values = decode_token(token)
    if not (
        isinstance(values, list)
        and len(values) == 3
        and all(type(v) is int and 0 <= v <= MAX_INT for v in values)
    ):
        raise BadRequest("cursor is not valid")
    return ProblemPosition(*values)


class _Echo:
    """A file for csv.writer that hands back what it is given."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(problems: Iterable[dict], *, batch: int = 500) -> Iterator[str]:
    """The CSV download, `batch` lines per chunk of the response."""
    writer = csv.writer(_Echo())
    lines = [writer.writerow(CSV_COLUMNS)]
    for p in problems:
        kind = ImportProblem.Kind(p["kind"]).label
        cells = (p["key"], p["url"], p["reason"], p["message"])
        lines.append(writer.writerow([kind, p["line"], *map(_inert, cells)]))
        if len(lines) >= batch:
            yield "".join(lines)
            lines = []
    yield "".join(lines)


def _inert(cell: str) -> str:
    """A cell a spreadsheet will not run as a formula (OWASP's CSV injection advice):
    what the CSV said is kept, after a quote, when it starts like a formula."""
    return "'" + cell if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell

"""The same SQL as a first page of the cars API, orjson-dumped; and the same, cached."""

import orjson
from django.db import connection
from django.http import HttpResponse

SQL = "SELECT id, title, description FROM cars_car ORDER BY id LIMIT %s OFFSET %s"
_bodies: dict[str, bytes] = {}  # query string → response body (the cached variant)


def _body(request) -> bytes:
    limit = int(request.GET.get("limit", 100))
    offset = int(request.GET.get("offset", 0))
    with connection.cursor() as cursor:
        cursor.execute(SQL, [limit, offset])
        rows = [{"id": i, "title": t, "description": d} for i, t, d in cursor.fetchall()]
    return orjson.dumps(rows)


def cars(request):
    return HttpResponse(_body(request), content_type="application/json")


def cars_cached(request):
    key = request.META.get("QUERY_STRING", "")
    body = _bodies.get(key)
    if body is None:
        body = _bodies[key] = _body(request)
    return HttpResponse(body, content_type="application/json")

"""Liveness and readiness probes (SPEC §7)."""

import logging
import uuid

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from cars import search_engine

logger = logging.getLogger(__name__)


@never_cache
def healthz(request):
    """The process serves requests."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", 10)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was stored")
    cache.delete(key)


def _check_storage() -> None:
    default_storage.exists("readyz-probe")


def _check_search() -> None:
    search_engine.ping()


CHECKS = {"database": _check_database, "cache": _check_cache, "storage": _check_storage}


def _checks() -> dict:
    """With SEARCH_URL, the search engine too: searches answer from the database while it
    is down, but degraded: slower on a big catalogue, and the index may fall behind."""
    return {**CHECKS, "search": _check_search} if settings.SEARCH_URL else CHECKS


@never_cache
def readyz(request):
    """Ready when the database, the cache, the storage (and the search engine, when
    configured) all answer; else 503 naming what failed."""
    checks = _checks()
    failed = []
    for name, check in checks.items():
        try:
            check()
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc)
            failed.append(name)
    if failed:
        return JsonResponse({"status": "unavailable", "failed": failed}, status=503)
    return JsonResponse({"status": "ok", "checks": list(checks)})

"""The catalogue's version: a counter that every change bumps.

Readers key ETags and cached counts by it, so one bump after an import invalidates every
cached response at once, in every process, without tracking which rows changed.
"""

from datetime import datetime

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import F
from django.utils import timezone

from .models import CatalogState

_STATE_PK = 1


# No parameters, so the same text runs on every backend's own cursor.
_VERSION_SQL = f"SELECT version FROM {CatalogState._meta.db_table} WHERE id = {_STATE_PK:d}"


def catalog_version() -> int:
    """Read on every API request, so on the driver's connection: the ORM's query building
    and Django's cursor wrapper (query logging, `%s` rewriting, execute wrappers) were most
    of a cached response's cost. What Django's own cursors do first is kept: the health
    check (CONN_HEALTH_CHECKS) and Django's database errors."""
    db = connections[DEFAULT_DB_ALIAS]  # once: each `connection.x` is a thread-local lookup
    db.close_if_health_check_failed()
    db.ensure_connection()
    with db.wrap_database_errors:
        row = db.connection.execute(_VERSION_SQL).fetchone()
    return row[0] if row else 0


def catalog_state() -> tuple[int, datetime] | None:
    """The version and when it was bumped: unlike the version alone, it also tells apart
    two databases (a restored one, a test's) that reached the same version."""
    return CatalogState.objects.filter(pk=_STATE_PK).values_list("version", "changed_at").first()


def bump_catalog_version() -> None:
    """Call inside the transaction that changes cars, so readers never see one without the other."""
    updated = CatalogState.objects.filter(pk=_STATE_PK).update(
        version=F("version") + 1, changed_at=timezone.now()
    )
    if not updated:
        CatalogState.objects.get_or_create(pk=_STATE_PK, defaults={"version": 1})

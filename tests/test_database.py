"""The database engine under the suite, and the search index its migrations build."""

import os

import pytest
from django.db import connection

pytestmark = pytest.mark.django_db


def test_suite_runs_on_postgresql_when_ci_requires_it():
    if not os.environ.get("REQUIRE_POSTGRES"):
        pytest.skip("PostgreSQL suite: set DATABASE_URL=postgres://… and REQUIRE_POSTGRES=1")
    assert connection.vendor == "postgresql", "CI asked for PostgreSQL but the suite got SQLite"


def test_search_index_survives_migrations():
    """Migrations that rebuild cars_car on SQLite would silently drop the FTS triggers."""
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
            triggers = {row[0] for row in cursor.fetchall()}
            assert {"cars_car_fts_ai", "cars_car_fts_ad", "cars_car_fts_au"} <= triggers
        elif connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'cars_car_search_gin'"
            )
            (definition,) = cursor.fetchone()
            assert "gin (search_vector)" in definition.lower()
        else:
            pytest.skip(f"no full-text index on {connection.vendor}")

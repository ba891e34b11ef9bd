"""Full-text search over title and description, best match first.

SQLite uses an FTS5 index (`cars_car_fts`, kept in sync by triggers; unicode61 removes
diacritics); PostgreSQL a stored tsvector column with a GIN index, in the `cars_search`
configuration (unaccent, then English stems). Migrations 0002 and 0003 create them; both
fold case and accents, on the text and on the query.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection
from django.db.models import Q, QuerySet, Value

_WORD = re.compile(r"\w+", re.UNICODE)
POSTGRES_CONFIG = "cars_search"  # migration 0003


def search_terms(query: str) -> list[str]:
    return _WORD.findall(query)[:16]


def apply_search(queryset: QuerySet, query: str) -> QuerySet:
    """Filter `queryset` to cars matching every word of `query`, ranked by relevance.

    The last word matches as a prefix, so results follow the user as they type.
    The queryset gains a `search_rank` annotation (higher is better on both engines).
    """
    terms = search_terms(query)
    if not terms:
        return queryset.none()
    if connection.vendor == "postgresql":
        return _postgres(queryset, terms)
    if connection.vendor == "sqlite":
        return _sqlite(queryset, terms)
    return _portable(queryset, terms)


def _sqlite(queryset: QuerySet, terms: list[str]) -> QuerySet:
    # Quote every term so user input is never read as FTS5 syntax.
    quoted = ['"{}"'.format(t.replace('"', '""')) for t in terms]
    quoted[-1] += "*"
    match = " ".join(quoted)
    return queryset.extra(
        tables=["cars_car_fts"],
        where=["cars_car_fts.rowid = cars_car.id", "cars_car_fts MATCH %s"],
        params=[match],
        # bm25 is lower-is-better; weight a title hit ten times a description hit.
        select={"search_rank": "-bm25(cars_car_fts, 10.0, 1.0)"},
    )


def _postgres(queryset: QuerySet, terms: list[str]) -> QuerySet:
    # Terms are \w+ only, so joining them is a safe to_tsquery expression.
    tsquery = " & ".join(terms) + ":*"
    return queryset.extra(
        where=[f"cars_car.search_vector @@ to_tsquery('{POSTGRES_CONFIG}', %s)"],
        params=[tsquery],
        select={
            "search_rank": f"ts_rank(cars_car.search_vector, to_tsquery('{POSTGRES_CONFIG}', %s))"
        },
        select_params=[tsquery],
    )


def _portable(queryset: QuerySet, terms: list[str]) -> QuerySet:
    """Other engines: every term in title or description, unranked."""
    for term in terms:
        queryset = queryset.filter(Q(title__icontains=term) | Q(description__icontains=term))
    return queryset.annotate(search_rank=Value(0.0))


# Kept identical to the trigger created by migration 0002.
_SQLITE_INSERT_TRIGGER = """CREATE TRIGGER cars_car_fts_ai AFTER INSERT ON cars_car BEGIN
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END"""


@contextmanager
def deferred_search_index() -> Iterator[None]:
    """Index the rows inserted inside the block in one statement at its end (SQLite).

    FTS5 indexing row by row from a trigger was 2.5 s of a 100k-row import; one
    INSERT … SELECT at the end takes 0.4 s. Use inside the import's transaction: the
    trigger is dropped and re-created in it, so a rollback restores it. New rows are
    those above the highest id before the block (SQLite allocates max(rowid) + 1, and
    the transaction holds the write lock). PostgreSQL's generated column needs nothing.
    """
    if connection.vendor != "sqlite":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM cars_car")
        (highest,) = cursor.fetchone()
        cursor.execute("DROP TRIGGER cars_car_fts_ai")
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO cars_car_fts(rowid, title, description) "
            "SELECT id, title, description FROM cars_car WHERE id > %s",
            [highest],
        )
        cursor.execute(_SQLITE_INSERT_TRIGGER)

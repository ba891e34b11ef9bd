"""Full-text search over title and description, best match first.

SQLite uses an FTS5 index (`cars_car_fts`, kept in sync by triggers); PostgreSQL uses a
stored tsvector column with a GIN index. Both are created by migration 0002.
"""

import re

from django.db import connection
from django.db.models import Q, QuerySet, Value

_WORD = re.compile(r"\w+", re.UNICODE)


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
        where=["cars_car.search_vector @@ to_tsquery('english', %s)"],
        params=[tsquery],
        select={"search_rank": "ts_rank(cars_car.search_vector, to_tsquery('english', %s))"},
        select_params=[tsquery],
    )


def _portable(queryset: QuerySet, terms: list[str]) -> QuerySet:
    """Other engines: every term in title or description, unranked."""
    for term in terms:
        queryset = queryset.filter(Q(title__icontains=term) | Q(description__icontains=term))
    return queryset.annotate(search_rank=Value(0.0))

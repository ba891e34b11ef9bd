"""Full-text search in the database: a `Search` as SQL, best match first.

Indexes (migrations 0002 and 0003): SQLite uses an FTS5 index (`cars_car_fts`, kept in
sync by triggers; porter stems, unicode61 with diacritics removed); PostgreSQL a stored
tsvector column with a GIN index, in the `cars_search` configuration (unaccent, then
English stems). Both fold case and accents, on the text and on the query. What a query
means (its words and their near words) is `cars.search`'s, the same for every engine.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.db import connection
from django.db.models import Q, QuerySet, Value

from .search import Near, Search, Word, understand

POSTGRES_CONFIG = "cars_search"  # migration 0003


def best_match_first(search: Search) -> tuple[str, ...]:
    """The order of results when the client asks for none: exact and prefix matches before
    typo matches, fewer edits before more, then relevance. (Without a corrected word all
    cars need no edit, and SQLite would read a constant in ORDER BY as a column number.)"""
    if any(word.near for word in search.words):
        return ("search_typos", "-search_rank", "id")
    return ("-search_rank", "id")


def apply_search(queryset: QuerySet, search: Search | str) -> QuerySet:
    """Filter `queryset` to cars matching every word of `search`, ranked by relevance.

    Each word matches as the engine matches it (stems; the last word as a prefix too, so
    results follow the user as they type) and, when corrected, also as any of its near
    words. The queryset gains `search_rank` (higher is better on both engines) and
    `search_typos`: per corrected word, 0 when the car has the word as typed, else the
    edits to the nearest near word it has. `best_match_first` orders by both.
    """
    if isinstance(search, str):
        search = understand(search)
    if not search.words:
        return queryset.none()
    if connection.vendor == "postgresql":
        return _postgres(queryset, search)
    if connection.vendor == "sqlite":
        return _sqlite(queryset, search)
    return _portable(queryset, search)


@dataclass(frozen=True)
class _Syntax:
    """How one engine's full-text query language spells a word, or and and."""

    typed: Callable[[Word], str]
    near: Callable[[Near], str]
    either: str
    both: str

    def word(self, word: Word) -> str:
        if not word.near:
            return self.typed(word)
        return "(" + self.either.join([self.typed(word), *map(self.near, word.near)]) + ")"

    def query(self, search: Search) -> str:
        return self.both.join(self.word(w) for w in search.words)

    def typos(self, search: Search, has: str) -> tuple[str, list[str]]:
        """SQL and parameters for `search_typos`; `has` is SQL that is true when the car
        matches the query given as its parameter."""
        parts, params = [], []
        for word in search.words:
            if not word.near:
                continue
            fewest, most = word.near[0].edits, word.near[-1].edits
            if fewest == most:
                parts.append(f"CASE WHEN {has} THEN 0 ELSE {most} END")
                params.append(self.typed(word))
            else:
                nearest = [self.near(n) for n in word.near if n.edits == fewest]
                parts.append(f"CASE WHEN {has} THEN 0 WHEN {has} THEN {fewest} ELSE {most} END")
                params += [self.typed(word), self.either.join(nearest)]
        return " + ".join(parts) or "0", params


def _fts5_quoted(term: str) -> str:
    # Quoted, so that user input is never read as FTS5 syntax.
    return '"{}"'.format(term.replace('"', '""'))


_FTS5 = _Syntax(
    typed=lambda w: _fts5_quoted(w.typed) + ("*" if w.prefix else ""),
    near=lambda n: _fts5_quoted(n.word),
    either=" OR ",
    both=" AND ",
)


def _sqlite(queryset: QuerySet, search: Search) -> QuerySet:
    typos, typos_params = _FTS5.typos(
        search, "cars_car.id IN (SELECT rowid FROM cars_car_fts WHERE cars_car_fts MATCH %s)"
    )
    return queryset.extra(
        tables=["cars_car_fts"],
        where=["cars_car_fts.rowid = cars_car.id", "cars_car_fts MATCH %s"],
        params=[_FTS5.query(search)],
        # bm25 is lower-is-better; weight a title hit ten times a description hit.
        select={"search_rank": "-bm25(cars_car_fts, 10.0, 1.0)", "search_typos": typos},
        select_params=typos_params,
    )


# Words are letters and digits only, so joining them is a safe to_tsquery expression.
_TSQUERY = _Syntax(
    typed=lambda w: w.typed + (":*" if w.prefix else ""),
    near=lambda n: n.word,
    either=" | ",
    both=" & ",
)


def _postgres(queryset: QuerySet, search: Search) -> QuerySet:
    tsquery = _TSQUERY.query(search)
    matches = f"cars_car.search_vector @@ to_tsquery('{POSTGRES_CONFIG}', %s)"
    typos, typos_params = _TSQUERY.typos(search, matches)
    return queryset.extra(
        where=[matches],
        params=[tsquery],
        select={
            "search_rank": f"ts_rank(cars_car.search_vector, to_tsquery('{POSTGRES_CONFIG}', %s))",
            "search_typos": typos,
        },
        select_params=[tsquery, *typos_params],
    )


def _portable(queryset: QuerySet, search: Search) -> QuerySet:
    """Other engines: every word (or one of its near words) in title or description,
    unranked."""
    for word in search.words:
        matches = Q()
        for term in [word.typed, *(n.word for n in word.near)]:
            matches |= Q(title__icontains=term) | Q(description__icontains=term)
        queryset = queryset.filter(matches)
    return queryset.annotate(search_rank=Value(0.0), search_typos=Value(0))

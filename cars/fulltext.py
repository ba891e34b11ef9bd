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

from .search import Search, Word, fold, understand, with_beginnings

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
    results follow the user as they type: as the catalogue words it begins, since the
    indexes hold stems) and, when corrected, also as any of its near words. The queryset
    gains `search_rank` (higher is better on both engines) and `search_typos`: per
    corrected word, 0 when the car has the word as typed, else the edits to the nearest
    near word it has. `best_match_first` orders by both.
    """
    if isinstance(search, str):
        search = understand(search)
    if not search.words:
        return queryset.none()
    search = with_beginnings(search)
    if connection.vendor == "postgresql":
        return _postgres(queryset, search)
    if connection.vendor == "sqlite":
        return _sqlite(queryset, search)
    return _portable(queryset, search)


@dataclass(frozen=True)
class _Syntax:
    """How one engine's full-text query language spells a word (matched by its stem), a
    prefix of a stem, or and and."""

    term: Callable[[str], str]
    stem_prefix: Callable[[str], str]
    either: str
    both: str

    def typed(self, word: Word) -> str:
        """The word as typed; a prefix also as each catalogue word it begins (a prefix of
        its stem where the vocabulary cannot say: 1-2 letters, or a digit)."""
        if not word.prefix:
            return self.term(word.typed)
        if word.begun is None:
            return self.stem_prefix(word.typed)
        others = [w for w in word.begun if w != fold(word.typed)]
        return self._any([word.typed, *others])

    def word(self, word: Word) -> str:
        if not word.near:
            return self.typed(word)
        return self._any([word.typed, *(n.word for n in word.near)])

    def _any(self, words: list[str]) -> str:
        if len(words) == 1:
            return self.term(words[0])
        return "(" + self.either.join(map(self.term, words)) + ")"

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
                nearest = [self.term(n.word) for n in word.near if n.edits == fewest]
                parts.append(f"CASE WHEN {has} THEN 0 WHEN {has} THEN {fewest} ELSE {most} END")
                params += [self.typed(word), self.either.join(nearest)]
        return " + ".join(parts) or "0", params


def _fts5_quoted(term: str) -> str:
    # Quoted, so that user input is never read as FTS5 syntax.
    return '"{}"'.format(term.replace('"', '""'))


_FTS5 = _Syntax(
    term=_fts5_quoted,
    stem_prefix=lambda word: _fts5_quoted(word) + "*",
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
    term=lambda word: word,
    stem_prefix=lambda word: word + ":*",
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

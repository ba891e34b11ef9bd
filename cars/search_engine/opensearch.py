"""The OpenSearch engine behind the seam (SEARCH_URL).

The engine decides which cars match and in what order; the database has the last word
on what exists: the ids of a page go through one query on `Car`, in the engine's order,
so a car the database lost (deleted while its removal from the index failed) never
shows. Whatever the engine cannot answer the database answers: when the engine is
down, slow or has no index yet (a logged warning), and past its result window of 10,000
cars (a deep page, or an explicit ordering of more matches; logged as information).
"""

import logging
from collections.abc import Callable

from django.db.models import QuerySet

from cars.search import Search, Word, search_terms

from . import queries
from .client import EngineUnavailable, ask, index_alias
from .database import DATABASE
from .mapping import WINDOW

logger = logging.getLogger("cars.search")


def _degraded(what: str, exc: EngineUnavailable) -> None:
    logger.warning("search %s answered by the database: %s", what, exc)


class OpenSearchSearch:
    name = "opensearch"

    def understand(self, query: str) -> Search:
        """Words as typed, and for each one the catalogue lacks, its near words from the
        engine's term suggester (checked against live cars)."""
        typed = search_terms(query)
        words = tuple(Word(t, prefix=i == len(typed) - 1) for i, t in enumerate(typed))
        search = Search(query, words)
        positions = queries.suspects(words)
        if not positions:
            return search
        try:
            answers = _msearch(queries.understanding(words, positions))
            found = queries.candidates(answers, positions)
            live = None
            if any(c.near for c in found.values()):
                live = _search(queries.liveness(found))
        except EngineUnavailable as exc:
            _degraded("correction", exc)
            return DATABASE.understand(query)
        return queries.corrected(search, found, live)

    def count(self, search: Search) -> int:
        try:
            answer = ask(
                lambda es: es.count(index=index_alias(), body={"query": queries.query(search)})
            )
        except EngineUnavailable as exc:
            _degraded("count", exc)
            return DATABASE.count(search)
        return answer["count"]

    def ids(self, search: Search, *, offset: int, limit: int) -> list[int]:
        answer = _search(queries.page(search, offset=offset, limit=limit))
        return [int(hit["_id"]) for hit in answer["hits"]["hits"]]

    def ranked(self, queryset: QuerySet, search: Search, fields: tuple[str, ...]) -> "Ranked":
        rows = queryset.values(*fields)
        return Ranked(self, rows, search, lambda: DATABASE.ranked(queryset, search, fields))

    def matching(self, queryset: QuerySet, search: Search) -> QuerySet:
        """Every match, in no order (an explicit ordering or the admin's list sorts them):
        the engine's ids, when they fit in its result window."""
        body = {**queries.page(search, offset=0, limit=WINDOW), "track_total_hits": WINDOW + 1}
        try:
            answer = _search(body)
        except EngineUnavailable as exc:
            _degraded("filter", exc)
            return DATABASE.matching(queryset, search)
        if answer["hits"]["total"]["value"] > WINDOW:
            logger.info("search: %s matches, more than the engine pages", WINDOW)
            return DATABASE.matching(queryset, search)
        return queryset.filter(pk__in=[int(hit["_id"]) for hit in answer["hits"]["hits"]])


def _search(body: dict) -> dict:
    return ask(lambda es: es.search(index=index_alias(), body=body))


def _msearch(bodies: dict[str, dict]) -> dict[str, dict]:
    """Several searches in one round trip; their answers by the bodies' names. One
    failed search (the index missing, say) fails them all, as a lone search would."""
    lines = [line for body in bodies.values() for line in ({}, body)]
    answer = ask(lambda es: es.msearch(index=index_alias(), body=lines))
    answers = dict(zip(bodies, answer["responses"], strict=True))
    for one in answers.values():
        if "error" not in one:
            continue
        if one["error"].get("type") == "index_not_found_exception":
            raise EngineUnavailable(
                f"no search index {index_alias()!r}: run `manage.py search_index --rebuild`"
            )
        raise EngineUnavailable(f"the search engine failed: {one['error']}")
    return answers


class Ranked:
    """Cars best match first, read a slice at a time (what paginators do): one engine
    request for the slice's ids, one database query for its rows."""

    def __init__(self, engine: OpenSearchSearch, rows: QuerySet, search: Search, fallback):
        self.engine = engine
        self.rows = rows
        self.search = search
        self.fallback: Callable[[], QuerySet] = fallback

    def __getitem__(self, key: slice) -> list[dict]:
        if not isinstance(key, slice) or key.step is not None:
            raise TypeError("Ranked results are read in slices")
        start, stop = key.start or 0, key.stop
        if stop is None or stop > WINDOW:
            logger.info("search: results past %s answered by the database", WINDOW)
            return list(self.fallback()[key])
        if stop <= start:
            return []
        try:
            ids = self.engine.ids(self.search, offset=start, limit=stop - start)
        except EngineUnavailable as exc:
            _degraded("page", exc)
            return list(self.fallback()[key])
        found = {row["id"]: row for row in self.rows.filter(pk__in=ids)}
        return [found[pk] for pk in ids if pk in found]

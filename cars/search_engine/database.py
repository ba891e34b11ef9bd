"""The embedded engine behind the seam: `cars.fulltext` in the database (SQLite FTS5 or
PostgreSQL full-text search, with the typo vocabulary). The laptop default, and the
answer whenever the search engine cannot give one."""

from django.db.models import QuerySet

from cars.fulltext import apply_search, best_match_first
from cars.models import Car
from cars.search import Search, understand


class DatabaseSearch:
    name = "database"

    def understand(self, query: str) -> Search:
        return understand(query)

    def count(self, search: Search) -> int:
        return apply_search(Car.objects.all(), search).count()

    def ranked(self, queryset: QuerySet, search: Search, fields: tuple[str, ...]) -> QuerySet:
        return apply_search(queryset, search).values(*fields).order_by(*best_match_first(search))

    def matching(self, queryset: QuerySet, search: Search) -> QuerySet:
        return apply_search(queryset, search)


DATABASE = DatabaseSearch()

"""`manage.py search_index --rebuild`: a new search index from the database, swapped in."""

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from opensearchpy.exceptions import OpenSearchException

from cars.search_engine import rebuild as rebuild_index
from cars.search_engine.indexing import IndexingFailed
from cars.search_engine.rebuild_lock import RebuildRunning


class Command(BaseCommand):
    help = (
        "Build a new search index <SEARCH_INDEX>-<timestamp> from every car, then move the "
        "SEARCH_INDEX alias to it in one atomic request (search keeps answering from the "
        "old index meanwhile) and delete the old one. Repairs an index that lags the "
        "database (the engine was down, or a process died between a commit and its indexing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="rebuild the index")

    def handle(self, *args, rebuild: bool, **options):
        if not settings.SEARCH_URL:
            raise CommandError("SEARCH_URL is not set: search runs in the database, no index")
        if not rebuild:
            raise CommandError("nothing to do: use --rebuild")
        try:
            done = rebuild_index()
        except RebuildRunning as exc:
            raise CommandError(
                f"another rebuild of {settings.SEARCH_INDEX} is running; it is left alone"
            ) from exc
        except (OpenSearchException, IndexingFailed) as exc:
            raise CommandError(f"rebuild failed, the old index still answers: {exc}") from exc
        self.stdout.write(
            f"indexed {done.cars} cars into {done.index} "
            f"({done.caught_up} written meanwhile); {settings.SEARCH_INDEX} now points at it"
        )

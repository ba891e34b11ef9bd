"""`python manage.py migrate_pictures`: move per-car files to pictures by content.

Before pictures by content, each car had its own copy of its original
(`images/image_<id>/…`) and of its renditions. This reads each such original once,
stores it as a picture by content (rendered once per platform, or found already stored)
and points the car at it; the car's own files are deleted once that is committed.

Safe while the service runs: the API shows a car's own renditions until the car points at
its picture, so answers stay the same apart from the URLs. Re-runnable: it picks up the
cars that still have files of their own, and a run cut short loses nothing.
"""

import hashlib

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandParser

from cars.models import Car
from cars.pictures import stored_sha256s
from imports.pipeline import (
    CarRef,
    ImageItem,
    ItemOutcome,
    record_outcomes,
    render_picture,
    render_pool,
)
from imports.reasons import FetchError


class Command(BaseCommand):
    help = "Move cars' own image files (the old layout) to pictures stored by content."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=50, help="cars per transaction")

    def handle(self, *args, **options) -> None:
        moved = missing = 0
        todo = Car.objects.filter(picture__isnull=True).exclude(legacy_image="")
        with render_pool() as pool:
            while batch := list(
                todo.order_by("pk").values_list("pk", "external_key", "legacy_image",
                                                  "image_fetched_from")[: options["batch"]]
            ):  # fmt: skip
                outcomes, unreadable = self._outcomes(pool, batch)
                missing += len(unreadable)
                if unreadable:  # nothing to move: forget the files, keep the car's data
                    Car.objects.filter(pk__in=unreadable).update(
                        legacy_image="", legacy_renditions={}
                    )
                if outcomes:
                    moved += record_outcomes(outcomes, touch=False).ok
                self.stdout.write(f"moved {moved} cars", ending="\r")
        self.stdout.write(f"moved {moved} cars; {missing} had no readable original")

    def _outcomes(self, pool, batch) -> tuple[list[ItemOutcome], list[int]]:
        contents, unreadable = {}, []
        for pk, key, name, fetched_from in batch:
            try:
                with default_storage.open(name) as original:
                    data = original.read()
            except OSError as exc:
                self.stderr.write(f"car {pk}: cannot read {name}: {exc}")
                unreadable.append(pk)
                continue
            item = ImageItem(fetched_from or name, (CarRef(pk, 0, key),))
            contents.setdefault(hashlib.sha256(data).hexdigest(), []).append((item, data))
        stored = stored_sha256s(contents)
        renders = {
            sha: pool.submit(render_picture, sha, pairs[0][1])
            for sha, pairs in contents.items()
            if sha not in stored
        }
        outcomes = []
        for sha, pairs in contents.items():
            new = error = None
            if sha in renders:
                try:
                    new = renders[sha].result()
                except FetchError as exc:
                    error = exc
            for n, (item, _) in enumerate(pairs):
                outcomes.append(ItemOutcome(item, sha, new=new if n == 0 else None, error=error))
        return outcomes, unreadable

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
from cars.pictures.store import stored_sha256s
from imports.fetching import FetchError
from imports.pictures.pipeline import (
    CarRef,
    ImageItem,
    ItemOutcome,
    check_and_render,
    record_outcomes,
    render_pool,
)


class Command(BaseCommand):
    help = "Move cars' own image files (the old layout) to pictures stored by content."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--batch", type=int, default=50, help="cars per transaction")

    def handle(self, *args, **options) -> None:
        moved = left = 0
        after = 0  # cars are taken in id order, each once, so a car left as it was is not
        todo = Car.objects.filter(picture__isnull=True).exclude(legacy_image="")
        with render_pool() as pool:
            while batch := list(
                todo.filter(pk__gt=after)
                .order_by("pk")
                .values_list("pk", "external_key", "legacy_image", "image_fetched_from")[
                    : options["batch"]
                ]
            ):
                after = batch[-1][0]
                outcomes, problems = self._outcomes(pool, batch)
                for pk, problem in problems:
                    self.stderr.write(f"car {pk} left as it was: {problem}")
                left += len(problems)
                if outcomes:
                    moved += record_outcomes(outcomes, touch=False).ok
                self.stdout.write(f"moved {moved} cars", ending="\r")
        self.stdout.write(f"moved {moved} cars; {left} left as they were (see above)")

    def _outcomes(self, pool, batch) -> tuple[list[ItemOutcome], list[tuple[int, str]]]:
        """The batch's outcomes, and the cars left as they were, with why.

        A car whose original cannot be read, or no longer passes the image checks, keeps
        its own files and data: its only copy is never deleted here.
        """
        contents, problems = {}, []
        for pk, key, name, fetched_from in batch:
            try:
                with default_storage.open(name) as original:
                    data = original.read()
            except Exception as exc:  # OSError, or a storage's own (S3's are not OSError)
                problems.append((pk, f"cannot read {name}: {exc}"))
                continue
            item = ImageItem(fetched_from or name, (CarRef(pk, 0, key),))
            contents.setdefault(hashlib.sha256(data).hexdigest(), []).append((item, data))
        stored = stored_sha256s(contents)
        renders = {
            sha: pool.submit(check_and_render, sha, pairs[0][1])
            for sha, pairs in contents.items()
            if sha not in stored
        }
        outcomes = []
        for sha, pairs in contents.items():
            new = None
            if sha in renders:
                try:
                    new = renders[sha].result()
                except FetchError as exc:
                    problems += [(item.cars[0].car_id, exc.message) for item, _ in pairs]
                    continue
            for n, (item, _) in enumerate(pairs):
                outcomes.append(ItemOutcome(item, sha, new=new if n == 0 else None))
        return outcomes, problems

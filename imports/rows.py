"""Applying parsed CSV rows to the catalogue, in batches, inside the caller's transaction."""

from collections.abc import Callable
from dataclasses import dataclass

from django.utils import timezone

from cars.models import Car, ImageStatus
from cars.renditions import stored_files

from .csv_reader import CsvRow
from .report import Counts

BATCH_SIZE = 1000
_ROW_FIELDS = ["title", "description", "source_image_url", "updated_at"]
_IMAGE_FIELDS = [
    "image",
    "image_fetched_from",
    "image_status",
    "image_error",
    "image_error_message",
    "renditions",
]


@dataclass(frozen=True)
class ImageJob:
    """One car whose image must be fetched (again)."""

    car_id: int
    line: int
    key: str
    ref: str
    old_files: tuple[str, ...] = ()


def needs_fetch(car: Car, ref: str, *, refresh: bool) -> bool:
    """An unchanged reference whose image is stored is not fetched again."""
    return refresh or car.image_status != ImageStatus.READY or car.image_fetched_from != ref


class RowApplier:
    """Upserts rows by natural key, one batch (two or three queries) at a time.

    Collects the image jobs to run after the transaction commits and the files that
    became orphans (to delete only once the change is committed).
    """

    def __init__(self, counts: Counts, *, refresh_images: bool = False):
        self.counts = counts
        self.refresh_images = refresh_images
        self.jobs: list[ImageJob] = []
        self.orphaned_files: list[str] = []
        self.changed = False
        self._batch: list[CsvRow] = []

    def add(self, row: CsvRow) -> None:
        self._batch.append(row)
        if len(self._batch) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        existing = {
            car.external_key: car
            for car in Car.objects.filter(external_key__in=[r.key for r in batch]).only(
                "id", "external_key", *_ROW_FIELDS, *_IMAGE_FIELDS
            )
        }
        now = timezone.now()
        created: list[tuple[CsvRow, Car]] = []
        updated: list[Car] = []
        for row in batch:
            car = existing.get(row.key)
            if car is None:
                created.append((row, self._new_car(row, now)))
            elif self._apply(row, car, now):
                updated.append(car)
        Car.objects.bulk_create([car for _, car in created], batch_size=BATCH_SIZE)
        for row, car in created:
            if row.image:
                self.jobs.append(ImageJob(car.pk, row.line, row.key, row.image))
        if updated:
            Car.objects.bulk_update(updated, _ROW_FIELDS + _IMAGE_FIELDS, batch_size=BATCH_SIZE)
        self.counts.created += len(created)
        self.changed = self.changed or bool(created or updated)

    def _new_car(self, row: CsvRow, now) -> Car:
        return Car(
            external_key=row.key,
            title=row.title,
            description=row.description,
            source_image_url=row.image or "",
            image_status=ImageStatus.PENDING if row.image else ImageStatus.NONE,
            created_at=now,
            updated_at=now,
        )

    def _apply(self, row: CsvRow, car: Car, now) -> bool:
        """Update `car` from `row`; queue its image; return whether it must be saved."""
        ref = row.image or ""
        changed = (car.title, car.description, car.source_image_url) != (
            row.title,
            row.description,
            ref,
        )
        if changed:
            car.title, car.description, car.source_image_url = row.title, row.description, ref
            car.updated_at = now
            self.counts.updated += 1
        else:
            self.counts.unchanged += 1
        if not ref:
            if car.image or car.image_status != ImageStatus.NONE:
                self.orphaned_files += stored_files(car.image.name, car.renditions)
                car.image, car.renditions, car.image_fetched_from = "", {}, ""
                car.image_status, car.image_error, car.image_error_message = "none", None, ""
                car.updated_at = now
                changed = True
        elif needs_fetch(car, ref, refresh=self.refresh_images):
            old = tuple(stored_files(car.image.name, car.renditions)) if car.image else ()
            self.jobs.append(ImageJob(car.pk, row.line, row.key, ref, old))
            if car.image_status != ImageStatus.PENDING and not car.image:
                car.image_status = ImageStatus.PENDING
                changed = True
        return changed

    def prune(self, key_seen: Callable[[str], bool]) -> None:
        """Delete every car whose key the (fully parsed) source did not name."""
        doomed: list[int] = []
        for pk, key, image, renditions in Car.objects.values_list(
            "pk", "external_key", "image", "renditions"
        ).iterator(chunk_size=5000):
            if not key_seen(key):
                doomed.append(pk)
                if image:
                    self.orphaned_files += stored_files(image, renditions)
        for start in range(0, len(doomed), BATCH_SIZE):
            Car.objects.filter(pk__in=doomed[start : start + BATCH_SIZE]).delete()
        self.counts.deleted += len(doomed)
        self.changed = self.changed or bool(doomed)

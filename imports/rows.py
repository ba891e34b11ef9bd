"""Applying parsed CSV rows to the catalogue, in batches, inside the caller's transaction.

Each batch costs one SELECT of the existing rows by natural key, one INSERT and one
UPDATE `executemany` (cars.services), whatever its size. Rows are plain tuples, not
model instances: building and saving Django models was most of a large import's time.
"""

import json
from collections.abc import Callable
from dataclasses import make_dataclass

from django.db import connection
from django.utils import timezone

from cars.models import Car, ImageStatus
from cars.pictures import delete_files_on_commit, legacy_files, release_on_commit
from cars.services import ROW_COLUMNS, cars_prune, cars_write_rows

from .csv_reader import CsvRow
from .pictures.pipeline import CarRef
from .report import Counts

BATCH_SIZE = 2000
# What `RowApplier._apply` says to do with a car's image state.
_CLEARED, _PENDING_STATE = "cleared", "pending"


# The importer's view of an existing car: its id and the columns it may change, in the
# order `_existing` reads them.
_Car = make_dataclass("_Car", ["id", *ROW_COLUMNS])


def needs_fetch(car: _Car, ref: str, *, refresh: bool) -> bool:
    """An unchanged reference whose image is stored is not fetched again."""
    return refresh or car.image_status != ImageStatus.READY or car.image_fetched_from != ref


class RowApplier:
    """Upserts rows by natural key, one batch at a time.

    Collects the image references to fetch once the transaction has committed, as
    `(reference, car)` pairs in CSV order. Pictures that a car stops showing are released
    when the transaction commits (and deleted if no other car shows them).
    """

    def __init__(self, counts: Counts, *, refresh_images: bool = False):
        self.counts = counts
        self.refresh_images = refresh_images
        self.refs: list[tuple[str, CarRef]] = []
        self.changed = False
        self._batch: list[CsvRow] = []
        self._empty_json = json.dumps({})
        # A first import into an empty catalogue has nothing to look up.
        self._catalogue_was_empty = not Car.objects.exists()

    def add(self, row: CsvRow) -> None:
        self._batch.append(row)
        if len(self._batch) >= BATCH_SIZE:
            self.flush()

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        existing = {} if self._catalogue_was_empty else self._existing(batch)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        inserts: list[tuple] = []
        updates: list[tuple] = []
        pending: list[tuple] = []
        cleared: list[tuple] = []
        with_images: list[CsvRow] = []
        for row in batch:
            car = existing.get(row.key)
            if car is None:
                inserts.append(self._new_row(row, now))
                if row.image:
                    with_images.append(row)
                continue
            text_changed, image = self._apply(row, car)
            if text_changed or image == _CLEARED:
                updates.append((car.title, car.description, car.source_image_url, now, car.id))
            if image == _CLEARED:
                cleared.append((self._empty_json, ImageStatus.NONE.value, car.id))
            elif image == _PENDING_STATE:
                pending.append((ImageStatus.PENDING.value, car.id))
        cars_write_rows(inserts=inserts, updates=updates, pending=pending, cleared=cleared)
        if with_images:
            ids = dict(
                Car.objects.filter(external_key__in=[r.key for r in with_images]).values_list(
                    "external_key", "id"
                )
            )
            self.refs += [(r.image, CarRef(ids[r.key], r.line, r.key)) for r in with_images]
        self.counts.created += len(inserts)
        self.changed = self.changed or bool(inserts or updates or pending or cleared)

    def _existing(self, batch: list[CsvRow]) -> dict[str, _Car]:
        rows = Car.objects.filter(external_key__in=[r.key for r in batch]).values_list(
            "id", "external_key", *ROW_COLUMNS
        )
        return {key: _Car(pk, *rest) for pk, key, *rest in rows}

    def _new_row(self, row: CsvRow, now) -> tuple:
        status = ImageStatus.PENDING if row.image else ImageStatus.NONE
        return (
            row.key,
            now,  # created_at
            row.title,
            row.description,
            row.image or "",
            None,  # picture_id
            "",  # legacy_image
            "",  # image_fetched_from
            status.value,
            None,  # image_error
            "",  # image_error_message
            self._empty_json,
            now,  # updated_at
        )

    def _apply(self, row: CsvRow, car: _Car) -> tuple[bool, str | None]:
        """Compare `car` with `row`; queue its image: (text changed, image state to write)."""
        ref = row.image or ""
        changed = (car.title, car.description, car.source_image_url) != (
            row.title,
            row.description,
            ref,
        )
        if changed:
            car.title, car.description, car.source_image_url = row.title, row.description, ref
            self.counts.updated += 1
        else:
            self.counts.unchanged += 1
        if not ref:
            if car.picture_id or car.legacy_image or car.image_status != ImageStatus.NONE:
                release_on_commit([car.picture_id])
                delete_files_on_commit(legacy_files(car.legacy_image, car.legacy_renditions))
                return changed, _CLEARED
        elif needs_fetch(car, ref, refresh=self.refresh_images):
            self.refs.append((ref, CarRef(car.id, row.line, row.key)))
            if car.image_status != ImageStatus.PENDING and not car.picture_id:
                return changed, _PENDING_STATE
        return changed, None

    def prune(self, key_seen: Callable[[str], bool]) -> None:
        """Delete every car whose key the (fully parsed) source did not name."""
        deleted = cars_prune(keep=key_seen, batch_size=BATCH_SIZE)
        self.counts.deleted += deleted
        self.changed = self.changed or bool(deleted)

"""Every write to `Car`, with the rules that come with one: the catalogue version, the
files a car owns (released after commit once no car shows them), the search words, and
the search engine's index (after commit). Callers (the import's row phase and image
phase, the admin) decide what to write. A car's pictures after its first are rows of
their own (`CarPicture`), written through cars.pictures.more from here, under the same
rules."""

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from operator import attrgetter, itemgetter
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import JSONField, QuerySet
from django.utils import timezone

from .catalog import bump_catalog_version
from .deferred_indexes import deferred_indexes
from .models import Car, ImageStatus
from .pictures.more import MorePictures, pictures_of, plan_more_pictures, record_more_outcomes
from .pictures.store import delete_files_on_commit, legacy_files, release_on_commit
from .rows_by_id import db_values, select_in, update_rows
from .search import deferred_search_index, rebuild_vocabulary
from .search_engine import index_on_commit, indexing_writes

TABLE = Car._meta.db_table
BATCH_SIZE = 2000


@dataclass(slots=True)
class CarRow:
    """One car as a source gives it: its natural key and the columns a source owns.

    Every field but `key`, `line` and `more_images` is a `Car` column of the same name;
    `upsert_cars` writes and compares them by name, so a new column is a field here and
    on the model. `more_images` are the car's pictures after its first (`source_image_url`),
    in feed order, each once: its `CarPicture` rows at positions 1, 2, ...

    A value: nothing changes a row once made. Not frozen, as a frozen dataclass's
    `__init__` (`object.__setattr__` per field) cost as much as writing the row.
    """

    key: str
    title: str
    description: str = ""
    source_image_url: str = ""  # "" when the row names no picture
    line: int = 0  # where the source named it, for reports
    description_html: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    more_images: tuple[str, ...] = ()


SOURCE_COLUMNS = tuple(
    f.name for f in fields(CarRow) if f.name not in ("key", "line", "more_images")
)
# Raw SQL takes JSON columns as text.
_JSON_COLUMNS = frozenset(
    f.name
    for f in Car._meta.concrete_fields
    if isinstance(f, JSONField) and f.name in SOURCE_COLUMNS
)
_source_values = attrgetter(*SOURCE_COLUMNS)  # a row's source columns, as a tuple
_JSON_AT = tuple(i for i, c in enumerate(SOURCE_COLUMNS) if c in _JSON_COLUMNS)
_EMPTY_JSON = json.dumps({})
_PENDING_VALUE, _NONE_VALUE = ImageStatus.PENDING.value, ImageStatus.NONE.value
# The columns the writer reads back to decide what to do with an existing car.
_STATE_COLUMNS = (
    "picture_id",
    "legacy_image",
    "legacy_renditions",
    "image_fetched_from",
    "image_status",
)
_INSERT_COLUMNS = ("external_key", "created_at", "updated_at", "image_status", *SOURCE_COLUMNS)
_INSERT = (
    f"INSERT INTO {TABLE} ({', '.join(_INSERT_COLUMNS)}, picture_id, legacy_image, "
    "image_fetched_from, image_error, image_error_message, legacy_renditions) "
    f"VALUES ({', '.join(['%s'] * len(_INSERT_COLUMNS))}, NULL, '', '', NULL, '', %s)"
)
# An update writes only what the row phase owns: the source's columns, and the image
# state when the reference goes or needs fetching, each guarded, so it never writes back
# a picture or an outcome it read before a concurrent writer (a chunk, a retry,
# migrate_pictures) changed it.
_UPDATE = (
    f"UPDATE {TABLE} SET {', '.join(f'{c} = %s' for c in SOURCE_COLUMNS)}, updated_at = %s "
    "WHERE id = %s"
)
_IDS = f"SELECT external_key, id FROM {TABLE} WHERE external_key IN ({{marks}})"
_PENDING = f"UPDATE {TABLE} SET image_status = %s WHERE id = %s AND picture_id IS NULL"
_CLEAR = (
    f"UPDATE {TABLE} SET picture_id = NULL, legacy_image = '', legacy_renditions = %s, "
    "image_fetched_from = '', image_status = %s, image_error = NULL, image_error_message = '' "
    "WHERE id = %s"
)


# What `_Writer._image_state` says to do with a car's image state.
_CLEARED, _PENDING_STATE = "cleared", "pending"


class ToFetch(NamedTuple):
    """A picture reference a car waits for, and where the source named it: its line and
    key, not the whole row, which would keep every row's text and attributes alive
    until the import's pictures are fetched."""

    ref: str
    car_id: int
    line: int
    key: str
    position: int = 0  # 0: the car's own picture; 1, 2, ...: its further ones


@dataclass
class Upserted:
    """What `upsert_cars` did: counts, and the references to fetch in source order."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    to_fetch: list[ToFetch] = field(default_factory=list)
    changed: bool = False  # anything written at all (a new image state counts)


def upsert_cars(
    rows: Iterable[CarRow],
    *,
    refresh_images: bool = False,
    prune: Callable[[str], bool] | None = None,
    batch_size: int = BATCH_SIZE,
) -> Upserted:
    """Create or update a car per row by natural key, in the caller's transaction.

    Each batch costs one SELECT of the existing cars by key and one `executemany` per
    statement, whatever its size: rows stay plain values, as building and saving models
    was most of a large import's time. With `prune` (called once `rows` is exhausted),
    every car whose key it refuses is deleted. The writer keeps its own rules: the
    search index is brought up to date in bulk at the end, the catalogue version moves
    when anything was written, and pictures or files no car shows any more go once the
    transaction commits. A reference is to fetch unless it is unchanged and its picture
    stored (or `refresh_images`).
    """
    done = Upserted()
    writer = _Writer(done, refresh_images=refresh_images)
    # Into an empty catalogue every row is an insert: its indexes are built once, at the end.
    first_fill = deferred_indexes(TABLE, when=writer.catalogue_was_empty)
    with deferred_search_index(), indexing_writes(), first_fill:
        batch: list[CarRow] = []
        for row in rows:
            batch.append(row)
            if len(batch) >= batch_size:
                writer.write(batch)
                batch = []
        writer.write(batch)
        if prune is not None:
            done.deleted = _prune(keep=prune, batch_size=batch_size)
            done.changed |= bool(done.deleted)
    if done.changed:
        bump_catalog_version()
    return done


class _Writer:
    def __init__(self, done: Upserted, *, refresh_images: bool):
        self.done = done
        self.refresh_images = refresh_images
        # A first import into an empty catalogue has nothing to look up.
        self.catalogue_was_empty = not Car.objects.exists()

    def write(self, batch: list[CarRow]) -> None:
        if not batch:
            return
        existing = {} if self.catalogue_was_empty else _existing(batch)
        now = connection.ops.adapt_datetimefield_value(timezone.now())
        known = [(row, car) for row in batch if (car := existing.get(row.key))]
        more = plan_more_pictures(
            {car["id"]: row.more_images for row, car in known}, refresh=self.refresh_images
        )
        inserts: list[tuple] = []
        updates: list[tuple] = []
        pending: list[tuple] = []
        cleared: list[tuple] = []
        created: list[CarRow] = []
        fetch_first: set[int] = set()  # existing cars whose own picture is to fetch
        for row in batch:
            car = existing.get(row.key)
            if car is None:
                status = _PENDING_VALUE if row.source_image_url else _NONE_VALUE
                inserts.append((row.key, now, now, status, *_values(row), _EMPTY_JSON))
                created.append(row)
                continue
            # A car whose further pictures changed is updated too (its detail changes).
            changed = car["id"] in more.changed or any(
                getattr(row, c) != car[c] for c in SOURCE_COLUMNS
            )
            if changed:
                self.done.updated += 1
                updates.append((*_values(row), now, car["id"]))
            else:
                self.done.unchanged += 1
            state, fetch = self._image_state(row, car)
            if fetch:
                fetch_first.add(car["id"])
            if state == _CLEARED:
                if not changed:
                    updates.append((*_values(row), now, car["id"]))
                cleared.append((_EMPTY_JSON, _NONE_VALUE, car["id"]))
            elif state == _PENDING_STATE:
                pending.append((_PENDING_VALUE, car["id"]))
        with connection.cursor() as cursor:
            for sql, params in ((_INSERT, inserts), (_UPDATE, updates), (_PENDING, pending),
                                (_CLEAR, cleared)):  # fmt: skip
                if params:
                    cursor.executemany(sql, params)
        wrote_more = more.write()
        self.done.changed |= bool(inserts or updates or pending or cleared or wrote_more)
        self.done.created += len(inserts)
        new_ids, new_more = self._created(created)
        for row in batch:  # what to fetch, in source order: each car's pictures in order
            car = existing.get(row.key)
            car_id = car["id"] if car else new_ids.get(row.key)
            if car_id is None:
                continue
            if car_id in fetch_first or (car is None and row.source_image_url):
                self.done.to_fetch.append(ToFetch(row.source_image_url, car_id, row.line, row.key))
            further = (more if car else new_more).to_fetch.get(car_id, ())
            self.done.to_fetch += [ToFetch(ref, car_id, row.line, row.key, p) for p, ref in further]

    def _created(self, created: list[CarRow]) -> tuple[dict[str, int], MorePictures]:
        """The ids of the cars just created that have pictures, and their further
        pictures' rows, written."""
        with_images = [r for r in created if r.source_image_url or r.more_images]
        if not with_images:
            return {}, MorePictures()
        # Raw SQL: the ORM's lookup prepared each of the batch's keys on its own, as
        # long as the query took.
        ids = dict(select_in(_IDS, [r.key for r in with_images]))
        more = plan_more_pictures(
            {ids[r.key]: r.more_images for r in with_images if r.more_images}, stored=False
        )
        more.write()
        return ids, more

    def _image_state(self, row: CarRow, car: dict) -> tuple[str | None, bool]:
        """What the car's image state becomes, and whether its picture is to fetch."""
        ref = row.source_image_url
        if not ref:
            if car["picture_id"] or car["legacy_image"] or car["image_status"] != ImageStatus.NONE:
                release_on_commit([car["picture_id"]])
                delete_files_on_commit(legacy_files(car["legacy_image"], car["legacy_renditions"]))
                return _CLEARED, False
            return None, False
        if (
            self.refresh_images
            or car["image_status"] != ImageStatus.READY
            or car["image_fetched_from"] != ref
        ):
            if car["image_status"] != ImageStatus.PENDING and not car["picture_id"]:
                return _PENDING_STATE, True
            return None, True
        return None, False


def _values(row: CarRow) -> list:
    """The row's source columns as SQL parameters. Once a row: most rows have no
    attributes, and `json.dumps({})` alone cost a tenth of the row phase."""
    values = list(_source_values(row))
    for i in _JSON_AT:
        values[i] = _EMPTY_JSON if values[i] == {} else json.dumps(values[i])
    return values


def _existing(batch: list[CarRow]) -> dict[str, dict]:
    """The cars of these keys, as {key: {column: value}} (ids and the columns compared)."""
    columns = ("id", *SOURCE_COLUMNS, *_STATE_COLUMNS)
    rows = Car.objects.filter(external_key__in=[r.key for r in batch]).values_list(
        "external_key", *columns
    )
    return {key: dict(zip(columns, rest, strict=True)) for key, *rest in rows}


def _prune(*, keep: Callable[[str], bool], batch_size: int) -> int:
    """Delete every car whose key `keep` refuses; return how many. Their pictures (the
    first and the further ones) and own files go once the caller's transaction commits."""
    doomed: list[int] = []
    pictures: set[int] = set()
    legacy: list[str] = []
    for pk, key, picture_id, legacy_image, legacy_renditions in Car.objects.values_list(
        "pk", "external_key", "picture_id", "legacy_image", "legacy_renditions"
    ).iterator(chunk_size=5000):
        if not keep(key):
            doomed.append(pk)
            if picture_id:
                pictures.add(picture_id)
            legacy += legacy_files(legacy_image, legacy_renditions)
    pictures |= pictures_of(doomed)
    for start in range(0, len(doomed), batch_size):
        # Their further pictures' rows go with them (CASCADE); only ids are read for that.
        Car.objects.filter(pk__in=doomed[start : start + batch_size]).only("pk").delete()
    index_on_commit(doomed)
    release_on_commit(pictures)
    delete_files_on_commit(legacy)
    return len(doomed)


class PictureSlot(NamedTuple):
    """Where a car shows a picture: 0 is its own (first), 1, 2, ... its further ones."""

    car_id: int
    position: int = 0


@dataclass(frozen=True)
class ImageOutcome:
    """What a fetch gave a picture slot: the picture fetched from `ref`, or, with a
    `reason` code, a failure."""

    picture_id: int | None = None
    ref: str = ""
    reason: str | None = None
    message: str = ""

    def car_columns(self, now) -> dict:
        """The car's image columns (its own picture)."""
        return {
            "picture_id": self.picture_id,
            "legacy_image": "",
            "legacy_renditions": {},
            "image_fetched_from": self.ref,
            "image_status": ImageStatus.FAILED if self.reason else ImageStatus.READY,
            "image_error": self.reason,
            "image_error_message": self.message,
            "updated_at": now,
        }

    def further_columns(self) -> dict:
        """A further picture's columns (`CarPicture`)."""
        return {
            "picture_id": self.picture_id,
            "fetched_from": self.ref,
            "status": ImageStatus.FAILED if self.reason else ImageStatus.READY,
            "error": self.reason,
            "error_message": self.message,
        }


def cars_record_images(
    updates: list[tuple[list[PictureSlot], ImageOutcome]], *, touch: bool = True
) -> None:
    """Apply image outcomes (each slot of an outcome gets its values; one UPDATE a place,
    in the table's order, so each page of a large table is written once), then release
    the pictures (and legacy files) that the slots showed before. Without `touch` the
    cars' `updated_at` stays as it was (moving files changes no answer).
    """
    if not updates:
        return
    now = timezone.now()
    firsts = [([s.car_id for s in slots if not s.position], o) for slots, o in updates]
    firsts = [(ids, outcome) for ids, outcome in firsts if ids]
    further = [
        ([s for s in slots if s.position], outcome.further_columns()) for slots, outcome in updates
    ]
    further = [(slots, columns) for slots, columns in further if slots]
    showing = {pk: outcome.picture_id for ids, outcome in firsts for pk in ids}
    previous, legacy = _shown_before(showing)
    rows, columns = [], ()
    for ids, outcome in firsts:
        values = outcome.car_columns(now)
        if not touch:
            del values["updated_at"]
        columns, prepared = tuple(values), db_values(Car, values)
        rows += [(*prepared, pk) for pk in ids]
    if rows:
        rows.sort(key=itemgetter(-1))  # the table's order: each page is written once
        update_rows(Car, columns, ("id",), rows)
    previous |= record_more_outcomes(further)
    if touch and further:  # a further picture's outcome changes its car's detail
        others = {s.car_id for slots, _ in further for s in slots}.difference(showing)
        touched = db_values(Car, {"updated_at": now})
        update_rows(Car, ("updated_at",), ("id",), [(*touched, pk) for pk in sorted(others)])
    bump_catalog_version()
    release_on_commit(previous)
    delete_files_on_commit(legacy)


_SHOWN_BEFORE = (
    f"SELECT id, picture_id, legacy_image, legacy_renditions FROM {Car._meta.db_table} "
    "WHERE (picture_id IS NOT NULL OR legacy_image <> '') AND id IN ({marks})"
)


def _shown_before(showing: dict[int, int | None]) -> tuple[set[int], list[str]]:
    """The pictures these cars showed that `showing` (car id → picture id) replaces, and
    their own files in the layout before pictures by content. Only the cars that show
    something are read back: none, on a first import."""
    previous, legacy = set(), []
    decode = Car._meta.get_field("legacy_renditions").from_db_value
    for pk, picture_id, image, renditions in select_in(_SHOWN_BEFORE, sorted(showing)):
        if picture_id and picture_id != showing[pk]:
            previous.add(picture_id)
        if image:
            legacy += legacy_files(image, decode(renditions, None, connection))
    return previous, legacy


def car_save(*, car: Car, text_changed: bool) -> None:
    """Save an edited car. The search vocabulary is rebuilt in the same transaction when
    its text changed, as an edit can add, rename or remove any word."""
    car.save()
    if text_changed:
        rebuild_vocabulary()
        index_on_commit([car.pk])
    bump_catalog_version()


def cars_delete(*, cars: QuerySet) -> None:
    """Delete these cars, then (once that commits) the pictures and files no car shows:
    their first pictures and their further ones."""
    with transaction.atomic():
        ids = []
        for pk, picture_id, legacy_image, legacy_renditions in cars.values_list(
            "pk", "picture_id", "legacy_image", "legacy_renditions"
        ):
            ids.append(pk)
            release_on_commit([picture_id])
            delete_files_on_commit(legacy_files(legacy_image, legacy_renditions))
        release_on_commit(pictures_of(ids))
        cars.delete()
        index_on_commit(ids)
        rebuild_vocabulary()
        bump_catalog_version()

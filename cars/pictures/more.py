"""A car's pictures after its first (`CarPicture`, at positions 1, 2, ...): every write
to their rows. The catalogue's writer (cars.services) decides what to write; this module
keeps the rows in step with a source's lists (`MorePictures`), records what fetching gave
them (`record_more_outcomes`) and names the pictures that deleted cars showed
(`pictures_of`), so that those go once no car shows them (cars.pictures).

Writes follow the car's own rules: a place whose reference is unchanged keeps its
picture and is fetched again only when it is not ready or `refresh_images` says so; the
row phase never writes a picture or an outcome it read (a concurrent chunk or retry may
have written one since), only references, places and the pending state of a place that
shows nothing.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from django.db import connection

from ..models import CarPicture, ImageStatus
from ..rows_by_id import db_values, id_batches, select_in, update_rows
from .store import release_on_commit

TABLE = CarPicture._meta.db_table
# A row moving to another place is parked past every real place first, so rows that swap
# places never meet on (car, position).
_PARKED = 1_000_000
_INSERT = (
    f"INSERT INTO {TABLE} (car_id, position, source_url, picture_id, fetched_from, status, "
    "error, error_message) VALUES "
)
_INSERT_ROW = "(%s, %s, %s, NULL, '', %s, NULL, '')"
# Rows per INSERT: many rows a statement took a third of the time of one row a statement
# (`executemany`) on SQLite; 4 parameters a row keeps it under any database's limit (999).
_INSERT_BATCH = 200
_MOVE = f"UPDATE {TABLE} SET position = %s WHERE id = %s"
_PENDING_VALUE = ImageStatus.PENDING.value  # an enum member's value, read once
_PENDING = f"UPDATE {TABLE} SET status = %s WHERE id = %s AND picture_id IS NULL"
_OUTCOME = ("picture_id", "fetched_from", "status", "error", "error_message")
_SHOWING = (
    f"SELECT car_id, position, picture_id FROM {TABLE} "
    "WHERE picture_id IS NOT NULL AND car_id IN ({marks})"
)


class _Place(NamedTuple):
    """A stored row, as the row phase reads it back."""

    id: int
    position: int
    source_url: str
    picture_id: int | None
    fetched_from: str
    status: str


@dataclass
class MorePictures:
    """What keeping some cars' further pictures in step with their lists writes.

    Built by `plan_more_pictures` (which reads), applied by `write` (which writes), so the
    caller knows which cars change before it writes them.
    """

    changed: set[int] = field(default_factory=set)  # cars whose list is not as stored
    # {car id: [(position, reference), ...]}: the places to fetch, in list order.
    to_fetch: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    _inserts: list[tuple] = field(default_factory=list)
    _moves: list[tuple[int, int]] = field(default_factory=list)  # (position, row id)
    _pending: list[tuple] = field(default_factory=list)
    _deletes: list[int] = field(default_factory=list)
    _released: set[int] = field(default_factory=set)

    def write(self) -> bool:
        """Apply the plan in the caller's transaction; True when it wrote anything.

        Gone places are deleted first and moving ones parked, so every place is free when
        its row arrives; the pictures of deleted places go once the transaction commits,
        if no car shows them.
        """
        with connection.cursor() as cursor:
            for ids in id_batches(self._deletes):
                CarPicture.objects.filter(pk__in=ids).delete()
            if self._moves:
                cursor.executemany(_MOVE, [(p + _PARKED, pk) for p, pk in self._moves])
                cursor.executemany(_MOVE, self._moves)
            _insert(cursor, self._inserts)
            if self._pending:
                cursor.executemany(_PENDING, self._pending)
        release_on_commit(self._released)
        return bool(self._deletes or self._moves or self._inserts or self._pending)

    def _keep_in_step(
        self, car_id: int, refs: tuple[str, ...], places: list[_Place], *, refresh: bool
    ) -> None:
        """Plan one car: a reference it had keeps its row (moved if its place changed),
        a new one gets a row, a row whose reference is gone is deleted."""
        if not places:  # a new car, or one that had none: every reference is a new row
            if refs:
                fetch = list(enumerate(refs, start=1))
                self._inserts += [(car_id, p, ref, _PENDING_VALUE) for p, ref in fetch]
                self.to_fetch[car_id] = fetch
                self.changed.add(car_id)
            return
        by_ref: dict[str, _Place] = {}
        for place in places:
            by_ref.setdefault(place.source_url, place)
        kept: set[int] = set()
        fetch: list[tuple[int, str]] = []
        changed = False
        for position, ref in enumerate(refs, start=1):
            place = by_ref.pop(ref, None)
            if place is None:
                self._inserts.append((car_id, position, ref, _PENDING_VALUE))
                fetch.append((position, ref))
                changed = True
                continue
            kept.add(place.id)
            if place.position != position:
                self._moves.append((position, place.id))
                changed = True
            if refresh or place.status != ImageStatus.READY or place.fetched_from != ref:
                fetch.append((position, ref))
                if place.status != ImageStatus.PENDING and not place.picture_id:
                    self._pending.append((_PENDING_VALUE, place.id))
        for place in places:
            if place.id not in kept:
                self._deletes.append(place.id)
                if place.picture_id:
                    self._released.add(place.picture_id)
                changed = True
        if changed:
            self.changed.add(car_id)
        if fetch:
            self.to_fetch[car_id] = fetch


def plan_more_pictures(
    wanted: dict[int, tuple[str, ...]], *, refresh: bool = False, stored: bool = True
) -> MorePictures:
    """What bringing each car's further pictures to `wanted[car id]` (references for
    positions 1, 2, ...) takes. One SELECT reads what they have (call it per batch of
    the writer's); `stored` False says they have nothing (cars just created)."""
    places: dict[int, list[_Place]] = defaultdict(list)
    if stored and wanted:
        rows = CarPicture.objects.filter(car_id__in=list(wanted)).order_by()
        for car_id, *values in rows.values_list("car_id", *_Place._fields):
            places[car_id].append(_Place(*values))
    plan = MorePictures()
    for car_id, refs in wanted.items():
        plan._keep_in_step(car_id, refs, places.get(car_id, []), refresh=refresh)
    return plan


def record_more_outcomes(updates: list[tuple[list[tuple[int, int]], dict]]) -> set[int]:
    """Write fetch outcomes on further pictures: `(slots, columns)`, slots being
    (car id, position) pairs that all get the same columns. Returns the pictures those
    places showed before and no longer do, for the caller to release after commit."""
    showing = {slot: values["picture_id"] for slots, values in updates for slot in slots}
    previous: set[int] = set()
    cars = sorted({car_id for car_id, _ in showing})
    for car_id, position, picture_id in select_in(_SHOWING, cars):  # each shows a picture
        if showing.get((car_id, position), picture_id) != picture_id:
            previous.add(picture_id)
    rows = []
    for slots, values in updates:
        prepared = db_values(CarPicture, {name: values[name] for name in _OUTCOME})
        rows += [(*prepared, car_id, position) for car_id, position in slots]
    rows.sort(key=itemgetter(-2, -1))  # (car, position): the table's order
    update_rows(CarPicture, _OUTCOME, ("car_id", "position"), rows)
    return previous


def pictures_of(car_ids: Iterable[int]) -> set[int]:
    """The pictures these cars show after their first (to release once they are deleted)."""
    found: set[int] = set()
    for ids in id_batches(list(car_ids)):
        rows = CarPicture.objects.filter(car_id__in=ids, picture__isnull=False).order_by()
        found.update(rows.values_list("picture_id", flat=True))
    return found


def _insert(cursor, rows: list[tuple]) -> None:
    """Insert these rows, `_INSERT_BATCH` a statement, in order."""
    full = _INSERT + ", ".join([_INSERT_ROW] * _INSERT_BATCH)
    for start in range(0, len(rows), _INSERT_BATCH):
        batch = rows[start : start + _INSERT_BATCH]
        sql = (
            full if len(batch) == _INSERT_BATCH else _INSERT + ", ".join([_INSERT_ROW] * len(batch))
        )
        cursor.execute(sql, [value for row in batch for value in row])

"""Every write to `Car`, with the rules that come with one: the catalogue version, the
files a car owns (released after commit once no car shows them) and the search words.
Callers (the import's row phase and image phase, the admin) decide what to write."""

from collections.abc import Callable

from django.db import connection, transaction
from django.db.models import QuerySet

from .catalog import bump_catalog_version
from .models import Car, ImageStatus
from .pictures import delete_files_on_commit, legacy_files, release_on_commit
from .search import rebuild_vocabulary

TABLE = Car._meta.db_table

# Every column the importer writes, in the order of its row tuples.
ROW_COLUMNS = (
    "title",
    "description",
    "source_image_url",
    "picture_id",
    "legacy_image",
    "image_fetched_from",
    "image_status",
    "image_error",
    "image_error_message",
    "legacy_renditions",
    "updated_at",
)
_INSERT = (
    f"INSERT INTO {TABLE} (external_key, created_at, {', '.join(ROW_COLUMNS)}) "
    f"VALUES ({', '.join(['%s'] * (len(ROW_COLUMNS) + 2))})"
)
# An update writes only what the row phase owns: the text, and the image state when the
# reference goes or needs fetching, each guarded, so it never writes back a picture or an
# outcome it read before a concurrent writer (a chunk, a retry, migrate_pictures) changed it.
_UPDATE = (
    f"UPDATE {TABLE} SET title = %s, description = %s, source_image_url = %s, updated_at = %s "
    "WHERE id = %s"
)
_PENDING = f"UPDATE {TABLE} SET image_status = %s WHERE id = %s AND picture_id IS NULL"
_CLEAR = (
    f"UPDATE {TABLE} SET picture_id = NULL, legacy_image = '', legacy_renditions = %s, "
    "image_fetched_from = '', image_status = %s, image_error = NULL, image_error_message = '' "
    "WHERE id = %s"
)


def cars_write_rows(*, inserts: list, updates: list, pending: list, cleared: list) -> None:
    """One batch of the row phase, one `executemany` per statement, in the caller's
    transaction: new cars (`external_key, created_at, *ROW_COLUMNS`), changed text
    (`title, description, source_image_url, updated_at, id`), images to fetch
    (`status, id`) and images gone (`legacy_renditions, status, id`)."""
    with connection.cursor() as cursor:
        for sql, params in ((_INSERT, inserts), (_UPDATE, updates), (_PENDING, pending),
                            (_CLEAR, cleared)):  # fmt: skip
            if params:
                cursor.executemany(sql, params)


def cars_prune(*, keep: Callable[[str], bool], batch_size: int) -> int:
    """Delete every car whose key `keep` refuses; return how many. Their pictures and own
    files go once the caller's transaction commits."""
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
    for start in range(0, len(doomed), batch_size):
        Car.objects.filter(pk__in=doomed[start : start + batch_size]).delete()
    release_on_commit(pictures)
    delete_files_on_commit(legacy)
    return len(doomed)


def image_outcome(now, *, picture_id: int | None = None, ref: str = "", reason=None, message=""):
    """A car's image columns after a fetch: showing the picture fetched from `ref`, or,
    with a `reason` code, failed."""
    return {
        "picture_id": picture_id,
        "legacy_image": "",
        "legacy_renditions": {},
        "image_fetched_from": ref,
        "image_status": ImageStatus.FAILED if reason else ImageStatus.READY,
        "image_error": reason,
        "image_error_message": message,
        "updated_at": now,
    }


def cars_record_images(updates: list[tuple[list[int], dict]], *, touch: bool = True) -> None:
    """Apply image outcomes (one UPDATE per reference: its cars get the same values), then
    release the pictures (and legacy files) that the cars showed before."""
    if not updates:
        return
    showing = {pk: values["picture_id"] for ids, values in updates for pk in ids}
    previous, legacy = set(), []
    for some in _batches(list(showing)):
        before = Car.objects.filter(pk__in=some).values_list(
            "pk", "picture_id", "legacy_image", "legacy_renditions"
        )
        for pk, picture_id, legacy_image, legacy_renditions in before:
            if picture_id and picture_id != showing[pk]:
                previous.add(picture_id)
            legacy += legacy_files(legacy_image, legacy_renditions)
    for ids, values in updates:
        if not touch:  # moving files changes no answer, so not the car's `updated_at`
            values = {k: v for k, v in values.items() if k != "updated_at"}
        for some in _batches(ids):
            Car.objects.filter(pk__in=some).update(**values)
    bump_catalog_version()
    release_on_commit(previous)
    delete_files_on_commit(legacy)


def _batches(ids: list[int], size: int = 1000):
    """Slices of `ids` small enough for any database's limit on query parameters."""
    return (ids[start : start + size] for start in range(0, len(ids), size))


def car_save(*, car: Car, text_changed: bool) -> None:
    """Save an edited car. The search vocabulary is rebuilt in the same transaction when
    its text changed, as an edit can add, rename or remove any word."""
    car.save()
    if text_changed:
        rebuild_vocabulary()
    bump_catalog_version()


def cars_delete(*, cars: QuerySet) -> None:
    """Delete these cars, then (once that commits) the pictures and files no car shows."""
    with transaction.atomic():
        for picture_id, legacy_image, legacy_renditions in cars.values_list(
            "picture_id", "legacy_image", "legacy_renditions"
        ):
            release_on_commit([picture_id])
            delete_files_on_commit(legacy_files(legacy_image, legacy_renditions))
        cars.delete()
        rebuild_vocabulary()
        bump_catalog_version()

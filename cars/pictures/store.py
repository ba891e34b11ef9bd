"""Pictures by content: storing a new one, finding a stored one, and deleting the files
of those that no car shows any more (as its first picture or as a further one).

A picture's row and files come and go together, under the row's lock: `store_picture`
writes the files of a picture it has just created, inside the caller's transaction, and
`release_pictures` deletes them only after the transaction that removed the last car
showing them has committed, after checking again under the lock that no car took it
meanwhile. So two imports that race on the same picture never delete what the other one
needs: the one that attaches a car to a picture holds its row until it commits, and a
picture deleted under its feet is noticed (`PictureGone`) instead of pointed at.
"""

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from PIL import Image

from ..catalog import bump_catalog_version
from ..models import Car, CarPicture, Picture
from .rendering import Rendition, render_all

logger = logging.getLogger(__name__)


class PictureGone(Exception):
    """A stored picture the caller meant to show was deleted meanwhile: render it again."""

    def __init__(self, sha256s: Iterable[str]):
        self.sha256s = set(sha256s)
        super().__init__(f"{len(self.sha256s)} picture(s) deleted meanwhile")


@dataclass(frozen=True)
class NewPicture:
    """A checked and rendered picture, not stored yet (it travels back from a render process)."""

    sha256: str
    extension: str  # ".jpg", ".png", ...
    width: int
    height: int
    data: bytes
    renditions: dict[str, Rendition]

    @property
    def name(self) -> str:
        return picture_name(self.sha256, self.extension)


def picture_name(sha256: str, extension: str) -> str:
    """The original's stored name: its content, so the same bytes always get one name."""
    return f"images/{sha256}{extension}"


def stored_sha256s(sha256s: Iterable[str]) -> set[str]:
    """Which of these contents are stored already."""
    wanted = list(set(sha256s))
    return set(Picture.objects.filter(sha256__in=wanted).values_list("sha256", flat=True))


def locked_pictures(sha256s: Iterable[str]) -> dict[str, int]:
    """{sha256: picture id} of those stored, each row locked until the transaction ends.

    Locked in one order (by content), so two transactions never wait on each other.
    """
    rows = (
        Picture.objects.select_for_update()
        .filter(sha256__in=sorted(set(sha256s)))
        .order_by("sha256")
        .values_list("sha256", "pk")
    )
    return dict(rows)


@dataclass(frozen=True)
class Stored:
    """What `store_pictures` did: the picture id of each content now stored (and locked),
    and which of those this call created."""

    ids: dict[str, int] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)


def store_pictures(new: Mapping[str, NewPicture], shared: Iterable[str]) -> Stored:
    """Store the `new` pictures ({sha256: picture}) and lock the `shared` ones (contents
    stored before), each row locked until the caller's transaction ends.

    One pass in content order, so two transactions never wait on each other. A new
    picture a concurrent import stored first is found, not stored twice. A new picture
    whose storing fails (OSError) is logged and left out of `ids`: nothing of it is kept.
    Raises PictureGone when a shared picture was deleted meanwhile: the caller's
    transaction must then roll back (files of new ones written so far have no row, and are
    overwritten when those bytes are stored again).
    """
    shared = set(shared)
    stored = Stored()
    for sha256 in sorted(new.keys() | shared):
        if sha256 in shared:
            if not (found := locked_pictures([sha256])):
                raise PictureGone({sha256} | (shared - stored_sha256s(shared)))
            stored.ids.update(found)
            continue
        try:
            stored.ids[sha256], made = store_picture(new[sha256])
        except OSError as exc:
            logger.warning("storing the picture %s failed: %s", sha256, exc)
            continue
        if made:
            stored.created.add(sha256)
    return stored


def store_picture(new: NewPicture) -> tuple[int, bool]:
    """(picture id, created): the picture with these bytes, stored now if it was not.

    Call inside a transaction. Only the transaction that creates the row writes the files,
    while it holds the row; a concurrent creator of the same content waits for it, then
    finds its row. Raises OSError (the row is not kept) when the storage fails.
    """
    stored = locked_pictures([new.sha256])
    if stored:
        return stored[new.sha256], False
    written: list[str] = []
    try:
        with transaction.atomic():
            picture = Picture.objects.create(
                sha256=new.sha256,
                image=new.name,
                width=new.width,
                height=new.height,
                renditions={name: r.stored() for name, r in new.renditions.items()},
            )
            for name, data in [
                (new.name, new.data),
                *((r.name, r.data) for r in new.renditions.values()),
            ]:
                _write(name, data)
                written.append(name)
    except IntegrityError:  # created by a concurrent transaction, now committed
        return locked_pictures([new.sha256])[new.sha256], False
    except OSError:
        _delete_files(written)  # no row, so no files: nothing half-stored is left
        raise
    return picture.pk, True


def _write(name: str, data: bytes) -> None:
    """Store `data` as `name`; any failure of the storage is an OSError (S3's are not)."""
    try:
        saved = default_storage.save(name, ContentFile(data))
    except OSError:
        raise
    except Exception as exc:  # botocore's ClientError, EndpointConnectionError, ...
        raise OSError(f"the storage refused {name}: {exc}") from exc
    if saved != name:  # the storage must overwrite in place (STORAGES, allow_overwrite)
        default_storage.delete(saved)
        raise OSError(f"the storage stored {name} as {saved}: it must overwrite in place")


def release_on_commit(picture_ids: Iterable[int | None]) -> None:
    """Delete these pictures, once the current transaction commits, if no car shows them."""
    ids = {pk for pk in picture_ids if pk}
    if ids:  # robust: a cleanup that fails must not fail what committed (the sweep retries)
        transaction.on_commit(lambda: release_pictures(ids), robust=True)


def legacy_files(image: str, renditions: dict | None) -> list[str]:
    """A car's own files in the layout before pictures by content: its original (`image`,
    empty once moved) and its renditions."""
    if not image:
        return []
    return [str(image), *(r["name"] for r in (renditions or {}).values() if r)]


def delete_files_on_commit(names: Iterable[str]) -> None:
    """Delete files that belonged to one car only (the layout before pictures by content)."""
    names = [name for name in names if name]
    if names:
        transaction.on_commit(lambda: _delete_files(names), robust=True)


def _delete_files(names: list[str]) -> None:
    """Delete files no row names any more; one that fails is logged, not raised (a file
    without a row is only disk space: the next picture with those bytes overwrites it)."""
    for name in names:
        try:
            default_storage.delete(name)
        except Exception as exc:  # OSError, or a storage's own (botocore's are not OSError)
            logger.warning("could not delete %s: %s", name, exc)


def release_pictures(picture_ids: Iterable[int]) -> int:
    """Delete every picture among these that no car shows, with its files; return how many.

    Each one is checked again under its row's lock, so a car that took it meanwhile keeps
    it.
    """
    deleted = 0
    for pk in sorted(set(picture_ids)):
        with transaction.atomic():
            picture = Picture.objects.select_for_update().filter(pk=pk).first()
            if picture is None or picture.cars.exists() or picture.car_pictures.exists():
                continue
            Picture.objects.filter(pk=pk).delete()
            # Under the row's lock, so a concurrent import of the same bytes waits, then
            # stores them again. A file that cannot be deleted is left without a row, never
            # a row without its files.
            _delete_files(picture.stored_names())
        deleted += 1
    return deleted


def orphan_picture_ids() -> list[int]:
    """Pictures no car shows: left by a process that died between a commit and its cleanup."""
    first = Car.objects.filter(picture=OuterRef("pk"))
    further = CarPicture.objects.filter(picture=OuterRef("pk"))
    orphans = Picture.objects.filter(~Exists(first), ~Exists(further))
    return list(orphans.values_list("pk", flat=True))


def rerender_picture(picture_id: int) -> bool:
    """Make every platform's rendition again from the stored original (a new platform).

    Returns False when the picture is gone.
    """
    picture = Picture.objects.filter(pk=picture_id).first()
    if picture is None:
        return False
    with default_storage.open(picture.image.name) as stored, Image.open(stored) as original:
        renditions = render_all(picture.image.name, original)
    with transaction.atomic():
        if not Picture.objects.select_for_update().filter(pk=picture_id).exists():
            return False
        for rendition in renditions.values():
            _write(rendition.name, rendition.data)
        Picture.objects.filter(pk=picture_id).update(
            renditions={name: r.stored() for name, r in renditions.items()}
        )
        bump_catalog_version()
    made = {r.name for r in renditions.values()}
    _delete_files([r["name"] for r in picture.renditions.values() if r and r["name"] not in made])
    return True

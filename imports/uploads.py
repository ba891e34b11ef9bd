"""Uploaded CSVs (the admin's "Import CSV" page): stored privately, deleted when done.

An upload is stored with the `imports` storage (settings.STORAGES): a folder nothing
serves, or with S3 a private bucket of its own, as a `text/csv` attachment whatever
Content-Type the uploader sent, so it can never be served as a page of this site. Its
job's source is `upload:<name>`, which the importer opens from that same storage, on any
machine, and `discard_upload` deletes the file once the job has ended.
"""

import contextlib
import logging
import uuid
from pathlib import Path, PurePosixPath

from django.core.exceptions import SuspiciousFileOperation
from django.core.files.storage import Storage, storages
from django.utils.text import get_valid_filename

from .sources import UPLOAD_DIR, UPLOAD_PREFIX, UPLOAD_STORAGE

logger = logging.getLogger(__name__)


def upload_storage() -> Storage:
    return storages[UPLOAD_STORAGE]


FALLBACK_NAME = "upload.csv"
MAX_NAME_BYTES = 100  # of UTF-8: every file system and object store takes that


def store_upload(file) -> str:
    """Store an uploaded CSV privately; return the job source that reads it.

    Each upload gets a folder of its own, so two files of the same name never collide
    and the job page still shows the name the file had.
    """
    name = f"{UPLOAD_DIR}/{uuid.uuid4().hex}/{stored_filename(file.name)}"
    return UPLOAD_PREFIX + upload_storage().save(name, file)


def stored_filename(uploaded: str | None) -> str:
    """The uploader's file name made safe to store, or `upload.csv` when nothing readable
    is left of it (`***`, `..`, an empty name: Django's get_valid_filename refuses those,
    which answered the upload 400). A long name keeps its end, the extension, cut at a
    character so that it is at most MAX_NAME_BYTES (255 on most file systems)."""
    try:
        filename = get_valid_filename(PurePosixPath(uploaded or "").name)
    except SuspiciousFileOperation:
        return FALLBACK_NAME
    filename = filename.encode()[-MAX_NAME_BYTES:].decode(errors="ignore")
    if not any(character.isalnum() for character in filename):
        return FALLBACK_NAME
    return filename


def upload_name(source: str) -> str | None:
    """The stored name behind an `upload:` source; None for any other source."""
    if not source.startswith(UPLOAD_PREFIX):
        return None
    name = source.removeprefix(UPLOAD_PREFIX)
    parts = PurePosixPath(name).parts
    if parts[:1] != (UPLOAD_DIR,) or ".." in parts:
        return None
    return name


def discard_upload(source: str) -> None:
    """Delete the uploaded file behind `source` (nothing for URLs and paths). Called when
    its job has ended, whatever the outcome: a job never runs twice. Never raises: a file
    left behind must not fail the job."""
    name = upload_name(source)
    if name is None:
        return
    storage = upload_storage()
    try:
        storage.delete(name)
        _remove_empty_folder(storage, str(PurePosixPath(name).parent))
    except Exception:
        logger.warning("could not delete the uploaded file %s", name, exc_info=True)


def _remove_empty_folder(storage: Storage, folder: str) -> None:
    """A local storage keeps the upload's own folder: remove it once empty."""
    try:
        path = Path(storage.path(folder))
    except NotImplementedError:
        return  # object stores have no folders
    with contextlib.suppress(OSError):
        path.rmdir()

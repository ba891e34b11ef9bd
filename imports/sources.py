"""Opening an import source: a local CSV path, an http(s) URL, or an uploaded file.

An uploaded CSV (the admin's "Import CSV" page) is saved with Django's default storage,
so a Celery worker on another machine reads the same file (S3 in production), and its
job's source is `upload:<storage name>`.
"""

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO
from urllib.parse import urlsplit

from django.core.files.storage import storages

from .fetching import Fetcher, FetchError, FetchPolicy

UPLOAD_PREFIX = "upload:"  # + the name the uploads' storage saved the file under
UPLOAD_DIR = "imports"  # every upload is stored below this folder of the storage
UPLOAD_STORAGE = "imports"  # uploads' private storage (settings.STORAGES; imports.uploads)


class SourceError(Exception):
    """Fatal: the source cannot be read. The message is one clear line."""


@dataclass
class OpenedSource:
    stream: BinaryIO
    base_dir: Path | None  # folder that relative image paths resolve in; None for URLs
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False  # a conditional request answered 304

    def sha256(self) -> str:
        """Digest of the whole content; leaves the stream at the start."""
        digest = hashlib.sha256()
        self.stream.seek(0)
        for block in iter(lambda: self.stream.read(1 << 20), b""):
            digest.update(block)
        self.stream.seek(0)
        return digest.hexdigest()


def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in ("http", "https")


def open_source(
    source: str, *, policy: FetchPolicy, etag: str = "", last_modified: str = ""
) -> OpenedSource:
    """Open `source` for reading, enforcing `policy.max_bytes` (the CSV size cap).

    With `etag`/`last_modified` a URL is asked conditionally; an unchanged one comes back
    with `not_modified` set and no content.
    """
    if is_url(source):
        return _open_url(source, policy, etag, last_modified)
    if source.startswith(UPLOAD_PREFIX):
        return _open_upload(source.removeprefix(UPLOAD_PREFIX), policy.max_bytes)
    scheme = urlsplit(source).scheme
    if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise SourceError(f"unsupported source {source!r}: use a file path or an http(s) URL")
    return _open_path(Path(source), policy.max_bytes)


def _open_path(path: Path, max_bytes: int) -> OpenedSource:
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise SourceError(f"{path} is not a file")
        if size > max_bytes:
            raise SourceError(f"{path} is {size} bytes, over CARS_CSV_MAX_BYTES ({max_bytes})")
        stream = path.open("rb")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except PermissionError:
        raise SourceError(f"{path}: permission denied") from None
    return OpenedSource(stream=stream, base_dir=path.resolve().parent)


def _open_url(url: str, policy: FetchPolicy, etag: str, last_modified: str) -> OpenedSource:
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with Fetcher(policy, max_connections=1) as fetcher:
            result = fetcher.fetch(url, headers=headers)
    except FetchError as exc:
        raise SourceError(f"cannot read {url}: {exc.message} ({exc.reason})") from None
    return OpenedSource(
        stream=io.BytesIO(result.content),
        base_dir=None,
        etag=result.etag,
        last_modified=result.last_modified,
        not_modified=result.status == 304,
    )


# --- Uploaded files ----------------------------------------------------------------------


def _open_upload(name: str, max_bytes: int) -> OpenedSource:
    """Read an uploaded CSV back, whole (like a URL's), capped at `max_bytes`.

    Its images must be URLs: like a remote CSV's, its relative paths are refused
    (`blocked_path`), since no folder of images came with it.
    """
    if PurePosixPath(name).parts[:1] != (UPLOAD_DIR,) or ".." in PurePosixPath(name).parts:
        raise SourceError(f"upload {name!r} is not an uploaded import file")
    try:
        with storages[UPLOAD_STORAGE].open(name, "rb") as file:
            content = file.read(max_bytes + 1)
    except FileNotFoundError:
        raise SourceError(f"upload {name!r}: no such file") from None
    except OSError as exc:
        raise SourceError(f"upload {name!r}: cannot be read ({exc})") from None
    if len(content) > max_bytes:
        raise SourceError(f"upload {name!r} is over CARS_CSV_MAX_BYTES ({max_bytes})")
    return OpenedSource(stream=io.BytesIO(content), base_dir=None)

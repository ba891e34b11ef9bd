"""Image references from a CSV: an http(s) URL, or a file beside a local CSV.

A CSV read from disk may name its images by relative paths. What a CSV says is untrusted
even when an operator chose the file, so a path must stay inside the CSV's folder once
`..` and symlinks are resolved. A CSV fetched from a URL or uploaded has no folder here
(`base_dir` is None): it may name no local file at all.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from cars.pictures.reasons import ImageReason

from .client import Fetcher
from .errors import FetchError

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def fetch_reference(fetcher: Fetcher, ref: str, *, base_dir: Path | None) -> bytes:
    """The bytes an image reference from a CSV names.

    `ref` is an http(s) URL, or, only when the CSV is a local file (`base_dir` is its
    folder), a relative path that must stay inside `base_dir` once resolved. A remote CSV
    never gets to read local files.
    """
    ref = ref.strip()
    if _SCHEME_RE.match(ref):
        return fetcher.fetch(ref).content  # non-http schemes are refused by fetch()
    if base_dir is None:
        raise FetchError(
            ImageReason.BLOCKED_PATH, f"{ref!r}: a remote CSV may not name local files"
        )
    return _read_local(ref, base_dir, max_bytes=fetcher.policy.max_bytes)


def _read_local(ref: str, base_dir: Path, *, max_bytes: int) -> bytes:
    path = _resolve_inside(ref, base_dir)
    with _local_errors(ref):
        if not path.is_file():
            raise FetchError(ImageReason.UNREACHABLE, f"{ref!r}: file not found")
        size = path.stat().st_size
        if size > max_bytes:
            raise FetchError(ImageReason.TOO_LARGE, f"{ref!r}: {size} bytes is over {max_bytes}")
        with path.open("rb") as file:
            content = file.read(max_bytes + 1)  # the file may have grown since stat()
    if len(content) > max_bytes:
        raise FetchError(ImageReason.TOO_LARGE, f"{ref!r}: file is over {max_bytes} bytes")
    return content


def _resolve_inside(ref: str, base_dir: Path) -> Path:
    """The real path `ref` names, refused unless it lies inside `base_dir`.

    Both sides are fully resolved, so `..` and symlinks are judged by where they really
    lead: `a/../b.jpg` is fine, `../b.jpg` or a link out of the folder is not.
    """
    if Path(ref).is_absolute():
        raise FetchError(ImageReason.BLOCKED_PATH, f"{ref!r}: absolute paths are not allowed")
    try:
        root = base_dir.resolve()
        path = (root / ref).resolve()
    # A NUL byte is a ValueError; a symlink loop is a RuntimeError from Python 3.11's
    # pathlib (an OSError in other versions). Uncaught, either ended the whole import.
    except (OSError, ValueError, RuntimeError) as exc:
        raise FetchError(ImageReason.BLOCKED_PATH, f"{ref!r}: not a usable path ({exc})") from exc
    if not path.is_relative_to(root):
        raise FetchError(ImageReason.BLOCKED_PATH, f"{ref!r} is outside the CSV's folder")
    return path


@contextlib.contextmanager
def _local_errors(ref: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise FetchError(ImageReason.UNREACHABLE, f"{ref!r}: cannot read ({exc})") from exc

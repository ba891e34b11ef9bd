"""One rebuild of an index at a time.

Two rebuilds of one alias at once would each delete the other's new index as an orphan
(it has no alias until its swap), and the loser's next bulk request would then create an
index of that name with no mapping. So a rebuild holds a lock named for its alias, that
the operating system or the database lets go of when its process ends, however it ends
(a rebuild killed mid-way blocks nothing):

- PostgreSQL: a session advisory lock, seen by every host of the site;
- SQLite (one host): an exclusive `flock` on a file in the temporary directory, named
  for the database file and the alias.
"""

import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


class RebuildRunning(Exception):
    """Another process is rebuilding this index."""


def _key(alias: str) -> str:
    return f"search_index:{connection.settings_dict['NAME']}:{alias}"


@contextmanager
def rebuild_lock(alias: str) -> Iterator[None]:
    """Hold the lock of `alias` for the block; RebuildRunning when another process has it."""
    if connection.vendor == "postgresql":
        with _advisory_lock(_key(alias)):
            yield
    else:
        with _file_lock(_key(alias)):
            yield


@contextmanager
def _advisory_lock(name: str) -> Iterator[None]:
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big", signed=True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            raise RebuildRunning(name)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


@contextmanager
def _file_lock(name: str) -> Iterator[None]:
    digest = hashlib.blake2b(name.encode(), digest_size=12).hexdigest()
    path = os.path.join(tempfile.gettempdir(), f"cars-search-rebuild-{digest}.lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebuildRunning(name) from None
        yield  # the lock goes with the descriptor, at close or at the process's end
    finally:
        os.close(fd)

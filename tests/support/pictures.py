"""Helpers for the pictures-by-content tests (tests/test_pictures.py).

What the storage holds (local MEDIA_ROOT or an S3 bucket on the moto server), the files a
car shows, storage writes and renders counted as they happen, an HTTP route held until
the test lets it answer, a scratch database of the suite's own kind for `manage.py`
subprocesses, the project as it was before pictures by content, and `manage.py
runserver` on a free port.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from tests.support import s3
from tests.support.httpserver import LocalHTTPServer, Route
from tests.support.images import jpeg_bytes
from tests.support.project import ROOT
from tests.support.stack import free_port

# The last commit before pictures by content: the layout a deployment has today.
OLD_LAYOUT_COMMIT = "29758fd"
# A car's own files in that layout: `images/image_<id>/…` and their renditions.
LEGACY_NAME = re.compile(r"^(CACHE/images/)?images/image_\d+/")
IMMUTABLE = "public, max-age=31536000, immutable"
PLATFORMS = ("default", "web", "mobile")


def picture_bytes(n: int) -> bytes:
    """The bytes of distinct picture number `n`: a small JPEG of a size of its own."""
    return jpeg_bytes(96 + 8 * n, 72 + 4 * n)


# --------------------------------------------------------------------------- storages


class LocalMedia:
    """The files under MEDIA_ROOT, by stored name."""

    kind = "local"

    def __init__(self, root: Path):
        self.root = Path(root)

    def names(self) -> set[str]:
        if not self.root.exists():
            return set()
        return {p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()}

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class Bucket(s3.Bucket):
    """A bucket of the moto S3 server, read like `Media` (names, read)."""

    kind = "s3"

    def names(self) -> set[str]:
        return self.keys()

    def read(self, name: str) -> bytes:
        return self.get(name)


def make_bucket(server) -> Bucket:
    return s3.make_bucket(server, Bucket)


def s3_storages(current: dict, bucket: Bucket) -> dict:
    """`STORAGES` with the default storage on `bucket`, as base.py builds it for USE_S3."""
    return {
        **current,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": bucket.server.storage_options(bucket.name),
        },
    }


class StorageWrites:
    """Every name the default storage's backend class writes (`_save`), while installed."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def install(self, monkeypatch) -> StorageWrites:
        from django.core.files.storage import storages

        backend = type(storages["default"])
        original = backend._save
        writes = self

        def _save(storage, name, content):
            saved = original(storage, name, content)
            with writes._lock:
                writes.names.append(saved)
            return saved

        monkeypatch.setattr(backend, "_save", _save)
        return self


# --------------------------------------------------------------------------- renders

_render_log: Path | None = None
_check_and_render: Callable | None = None


def logged_check_and_render(sha256: str, data: bytes):
    """`imports.pictures.pipeline.check_and_render`, with one line per call appended to the log.

    Runs in a render process (forked after the log was set) or a render thread; the
    log is a file, so calls made in other processes are counted too.
    """
    if _render_log is not None:
        fd = os.open(_render_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{sha256}\n".encode())
        finally:
            os.close(fd)
    return _check_and_render(sha256, data)


@contextmanager
def count_renders(monkeypatch, log: Path) -> Iterator[Callable[[], list[str]]]:
    """Within the block, every picture rendered by an import is logged; yields a reader."""
    global _render_log, _check_and_render
    import imports.pictures.pipeline as pipeline

    _check_and_render = pipeline.check_and_render
    monkeypatch.setattr(pipeline, "check_and_render", logged_check_and_render)
    log.write_text("")
    _render_log = log
    try:
        yield lambda: log.read_text().split()
    finally:
        _render_log = None


# --------------------------------------------------------------------------- HTTP


class HeldRoute:
    """A route of the local HTTP server that answers only once `release()` is called.

    The server reads a route's `delay` just before it answers: here that read waits.
    """

    def __init__(self, route: Route, timeout: float = 60.0):
        self._route = route
        self._open = threading.Event()
        self.timeout = timeout

    def __getattr__(self, name: str):
        return getattr(self._route, name)

    @property
    def delay(self) -> float:
        self._open.wait(self.timeout)
        return 0.0

    def release(self) -> None:
        self._open.set()


def hold(server: LocalHTTPServer, path: str, body: bytes) -> HeldRoute:
    held = HeldRoute(server.add(path, body, headers={"Content-Type": "image/jpeg"}))
    server.routes[path] = held
    return held


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


# --------------------------------------------------------------------------- databases


def suite_database_url() -> str:
    """The suite's own DATABASE_URL (PostgreSQL when the suite runs on it), else ""."""
    return os.environ.get("DATABASE_URL", "")


@dataclass
class ScratchDatabase:
    url: str
    query: Callable[[str], list]


@contextmanager
def scratch_database(folder: Path) -> Iterator[ScratchDatabase]:
    """A new empty database of the suite's kind: an SQLite file in `folder`, or a
    PostgreSQL database on the suite's server (dropped afterwards)."""
    suite = suite_database_url()
    if suite.startswith(("postgres://", "postgresql://")):
        import psycopg

        parts = urlsplit(suite)
        admin = parts._replace(path="/postgres").geturl()
        name = f"pictures_{secrets.token_hex(4)}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = parts._replace(path=f"/{name}").geturl()

        def query(sql: str) -> list:
            with psycopg.connect(url) as conn:
                return conn.execute(sql).fetchall()

        try:
            yield ScratchDatabase(url, query)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    path = folder / "db.sqlite3"

    def query(sql: str) -> list:
        with sqlite3.connect(path, timeout=20) as conn:
            return conn.execute(sql).fetchall()

    yield ScratchDatabase(f"sqlite:///{path}", query)


# --------------------------------------------------------------------------- processes


def manage_in(cwd: Path, env: dict[str, str], *args: str, timeout: float = 180):
    """`python manage.py *args` from `cwd` (the project, or an old checkout of it)."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_manage(env: dict[str, str], *args: str, log: Path) -> subprocess.Popen:
    """`python manage.py *args` from the project, in the background, output to `log`."""
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


def old_checkout(dest: Path) -> Path:
    """The project as it was before pictures by content (from git history), in `dest`."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", OLD_LAYOUT_COMMIT],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


@contextmanager
def runserver(env: dict[str, str], log: Path) -> Iterator[str]:
    """`manage.py runserver --noreload` on a free port; yields its base URL."""
    port = free_port()
    process = start_manage(
        env, "runserver", "--noreload", "--skip-checks", f"127.0.0.1:{port}", log=log
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError("runserver did not start:\n" + log.read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

"""The image phase of an import: fetch, check, store, render — concurrently, per URL.

Runs after the row transaction has committed. Worker threads never touch the database:
they fetch, validate, store the original and render the renditions; the calling thread
writes the outcomes in batches. Each distinct reference is fetched once per import, even
when several cars share it.
"""

import contextlib
import errno
import hashlib
import logging
import multiprocessing
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import (
    FIRST_COMPLETED,
    BrokenExecutor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import get_valid_filename

from cars.catalog import bump_catalog_version
from cars.models import Car, ImageStatus
from cars.renditions import delete_files, render_all

from .fetching import Fetcher, FetchPolicy, fetch_reference
from .images import ImageInfo, inspect_image
from .reasons import FetchError, ImageReason
from .rows import ImageJob

logger = logging.getLogger(__name__)

WRITE_BATCH = 200


@dataclass(frozen=True)
class ImageOutcome:
    job: ImageJob
    image_name: str = ""
    renditions: dict = field(default_factory=dict)
    error: FetchError | None = None


def fetch_policy(max_bytes: int) -> FetchPolicy:
    """The CARS_FETCH_* / CARS_ALLOW_PRIVATE_URLS settings, with a size cap."""
    return FetchPolicy(
        timeout=settings.CARS_FETCH_TIMEOUT,
        deadline=settings.CARS_FETCH_DEADLINE,
        max_bytes=max_bytes,
        allow_private=settings.CARS_ALLOW_PRIVATE_URLS,
        retries=settings.CARS_FETCH_RETRIES,
        backoff=settings.CARS_FETCH_BACKOFF,
    )


def image_fetch_policy() -> FetchPolicy:
    return fetch_policy(settings.CARS_IMAGE_MAX_BYTES)


def original_filename(ref: str, info: ImageInfo, data: bytes) -> str:
    """`<name from the URL>-<content hash>.<real extension>`.

    The hash makes a new picture a new name, so neither the original's URL nor its
    renditions' (imagekit names them after the source) ever serve stale bytes from a CDN.
    """
    stem = PurePosixPath(unquote(urlsplit(ref).path)).stem
    stem = get_valid_filename(stem)[:80] if stem else ""
    digest = hashlib.sha256(data).hexdigest()[:10]
    return f"{stem or 'image'}-{digest}{info.extension}"


def run_image_jobs(
    jobs: Iterable[ImageJob],
    *,
    base_dir: Path | None,
    workers: int,
    store: bool = True,
    on_outcome: Callable[[ImageOutcome], None] | None = None,
) -> float:
    """Fetch every job's image; with `store`, save originals and renditions on the cars.

    `workers` threads fetch (I/O bound); checking and rendering, which are CPU bound and
    hold the GIL for much of their time, run in a pool of one process per core, so
    downloads are never queued behind them and both cores render. At most `workers` fetches and
    `RENDER_BACKLOG_BYTES` of fetched-but-unrendered images are in flight, so memory stays
    bounded however long the CSV. Returns the fetch window: first request to last byte.
    """
    by_ref: dict[str, list[ImageJob]] = defaultdict(list)
    for job in jobs:
        by_ref[job.ref].append(job)
    if not by_ref:
        return 0.0
    window = _FetchWindow()
    writer = _OutcomeWriter() if store else None

    def deliver(outcomes: Iterable[ImageOutcome]) -> None:
        for outcome in outcomes:
            if writer:
                writer.add(outcome)
            if on_outcome:
                on_outcome(outcome)

    pending_refs = iter(by_ref.items())
    fetching: dict[Future, list[ImageJob]] = {}
    rendering: dict[Future, tuple[ImageJob, int]] = {}  # -> its job, bytes it holds
    with (
        Fetcher(image_fetch_policy(), max_connections=workers) as fetcher,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetch") as fetch_pool,
        _render_pool() if store else contextlib.nullcontext() as render_pool,
    ):
        while True:
            while len(fetching) < workers and _held(rendering) < RENDER_BACKLOG_BYTES:
                ref, group = next(pending_refs, (None, None))
                if ref is None:
                    break
                future = fetch_pool.submit(
                    _fetch, fetcher, ref, base_dir, window, inspect=not store
                )
                fetching[future] = group
            if not fetching and not rendering:
                break
            done, _ = wait([*fetching, *rendering], return_when=FIRST_COMPLETED)
            for future in done:
                if future in rendering:
                    job, _ = rendering.pop(future)
                    deliver([_rendered(future, job)])
                    continue
                group = fetching.pop(future)
                data, error = future.result()
                if error is not None:
                    if store:
                        delete_files([name for job in group for name in job.old_files])
                    deliver(ImageOutcome(job, error=error) for job in group)
                elif not store:
                    deliver(ImageOutcome(job) for job in group)
                else:
                    for job in group:
                        try:
                            rendering[render_pool.submit(_store, job, data)] = (
                                job,
                                len(data),
                            )
                        except BrokenExecutor as exc:
                            deliver([_render_crashed(job, exc)])
    if writer:
        writer.flush()
    return window.seconds


RENDER_BACKLOG_BYTES = 256 * 1024 * 1024
# Render processes run at this lower priority: rendering keeps every core busy, and the
# fetch threads (waiting on the network, then needing a little CPU to read and check each
# image) would otherwise queue behind it, stretching the download window.
RENDER_NICENESS = 10


def _held(rendering: dict[Future, tuple[ImageJob, int]]) -> int:
    return sum(size for _, size in rendering.values())


def _rendered(future: Future, job: ImageJob) -> ImageOutcome:
    try:
        return future.result()
    except Exception as exc:  # a render process died (killed for memory, a crash in C)
        return _render_crashed(job, exc)


def _render_crashed(job: ImageJob, exc: Exception) -> ImageOutcome:
    """Recorded on the car like any failure, so the next import retries it."""
    logger.error("rendering the image of car %s crashed: %r", job.car_id, exc)
    error = FetchError(ImageReason.INVALID_IMAGE, f"rendering crashed: {exc!r}")
    return ImageOutcome(job, error=error)


def _render_pool():
    """One process per core; threads where a process may not have children.

    Celery's prefork children are daemonic processes, which multiprocessing forbids to
    fork; there (and on one core) rendering falls back to a thread pool.
    """
    cores = os.cpu_count() or 1
    if cores > 1 and not multiprocessing.current_process().daemon:
        pool = ProcessPoolExecutor(
            max_workers=cores,
            mp_context=multiprocessing.get_context("fork"),
            initializer=os.nice,  # downloads and row writes first; rendering takes the rest
            initargs=(RENDER_NICENESS,),
        )
        # With fork, the first task forks every worker: do it now, before the fetch threads
        # exist, so no child inherits a lock that one of them held.
        pool.submit(os.getpid).result()
        return pool
    return ThreadPoolExecutor(max_workers=cores, thread_name_prefix="render")


class _FetchWindow:
    """Wall time from the first image request to the last image byte (benchmarks)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.first: float | None = None
        self.last: float | None = None

    def record(self, started: float, ended: float) -> None:
        with self._lock:
            self.first = started if self.first is None else min(self.first, started)
            self.last = ended if self.last is None else max(self.last, ended)

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None else self.last - self.first


def _fetch(
    fetcher: Fetcher, ref: str, base_dir: Path | None, window: _FetchWindow, *, inspect: bool
) -> tuple[bytes | None, FetchError | None]:
    """Fetch one reference (a fetch thread): (data, None) or (None, the error).

    With `inspect`, the bytes are checked here too; when they are to be stored, the check
    runs in the render process instead (`_store`): it decodes the whole image, and done
    here it held the GIL that the other fetch threads need to download (200 photos: a
    2.0 s download window instead of 1.2 s).
    """
    started = time.monotonic()
    try:
        try:
            data = fetch_reference(fetcher, ref, base_dir=base_dir)
        finally:
            window.record(started, time.monotonic())
        if inspect:
            inspect_image(data, max_pixels=settings.CARS_IMAGE_MAX_PIXELS)
    except FetchError as exc:
        return None, exc
    return data, None


def _store(job: ImageJob, data: bytes) -> ImageOutcome:
    """Check `data` is an image we accept, then replace the car's original and renditions."""
    try:
        info = inspect_image(data, max_pixels=settings.CARS_IMAGE_MAX_PIXELS)
    except FetchError as exc:
        try:
            delete_files(list(job.old_files))
        except OSError as storage_exc:  # the image's own fault is still the reason
            logger.warning("deleting old files of car %s failed: %s", job.car_id, storage_exc)
        return ImageOutcome(job, error=exc)
    try:
        delete_files(list(job.old_files))
        car = Car(pk=job.car_id)
        car.image.save(original_filename(job.ref, info, data), ContentFile(data), save=False)
        car.image.file = ContentFile(data)  # render from memory, not from the storage
    except OSError as exc:
        logger.warning("storing the image of car %s failed: %s", job.car_id, exc)
        return ImageOutcome(job, error=FetchError(ImageReason.STORAGE_ERROR, str(exc)))
    try:
        renditions = render_all(car)
    except Exception as exc:
        # Filesystem/storage errors carry an errno; anything else is the image's fault.
        reason = ImageReason.STORAGE_ERROR if _is_storage_error(exc) else ImageReason.INVALID_IMAGE
        logger.warning("rendering the image of car %s failed: %s", job.car_id, exc)
        delete_files([car.image.name])
        return ImageOutcome(job, error=FetchError(reason, f"cannot render the image: {exc}"))
    return ImageOutcome(job, image_name=car.image.name, renditions=renditions)


def _is_storage_error(exc: Exception) -> bool:
    return isinstance(exc, OSError) and exc.errno in set(errno.errorcode)


class _OutcomeWriter:
    """Writes outcomes to the cars in batches, each batch visible at once (version bump)."""

    def __init__(self) -> None:
        self._pending: list[ImageOutcome] = []

    def add(self, outcome: ImageOutcome) -> None:
        self._pending.append(outcome)
        if len(self._pending) >= WRITE_BATCH:
            self.flush()

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        now = timezone.now()
        cars = [_car_from_outcome(o, now) for o in pending]
        with transaction.atomic():
            Car.objects.bulk_update(
                cars,
                [
                    "image",
                    "image_fetched_from",
                    "image_status",
                    "image_error",
                    "image_error_message",
                    "renditions",
                    "updated_at",
                ],
            )
            bump_catalog_version()


def _car_from_outcome(outcome: ImageOutcome, now) -> Car:
    if outcome.error:
        return Car(
            pk=outcome.job.car_id,
            image="",
            renditions={},
            image_fetched_from="",
            image_status=ImageStatus.FAILED,
            image_error=outcome.error.reason,
            image_error_message=outcome.error.message,
            updated_at=now,
        )
    return Car(
        pk=outcome.job.car_id,
        image=outcome.image_name,
        renditions=outcome.renditions,
        image_fetched_from=outcome.job.ref,
        image_status=ImageStatus.READY,
        image_error=None,
        image_error_message="",
        updated_at=now,
    )

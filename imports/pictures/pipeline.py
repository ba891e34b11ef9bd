"""The image phase of an import: fetch, check, hash and render each distinct reference.

Runs after the row transaction has committed, over `ImageItem`s: one reference and the
cars that name it. `ImagePipeline.run` fetches the items on threads (I/O bound), hashes
the bytes, and renders only the contents that are not stored yet, in a process per core
(threads inside a Celery worker, whose children may not fork). It asks the database only
which contents are stored already. `record_outcomes` then writes a batch of outcomes in
one transaction (the caller's, when it records something beside them: a chunk's
progress): the new pictures and their files (stored by the catalogue,
cars.pictures.store) and the cars that show them, so a batch is applied whole or not at
all.
"""

import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from cars.pictures.reasons import ImageReason
from cars.pictures.rendering import render_all
from cars.pictures.store import (
    NewPicture,
    PictureGone,
    picture_name,
    store_pictures,
    stored_sha256s,
)
from cars.services import ImageOutcome, PictureSlot, cars_record_images

from ..fetching import Fetcher, FetchError, FetchPolicy, fetch_reference
from ..report import ImageProblem
from .fetch_feed import FetchFeed, FetchWindow
from .images import checked_image, inspect_image

logger = logging.getLogger(__name__)


class CarRef(NamedTuple):
    """A car waiting for the picture of a reference, and where the CSV named it.

    A value nobody changes, made once per picture a feed names (100k for a 20k-row feed
    of 5 pictures each): a NamedTuple, as a frozen dataclass's `__init__` cost five
    times as much.
    """

    car_id: int
    line: int
    key: str
    position: int = 0  # in the car's list of pictures: 0 is its own (first) picture

    @property
    def slot(self) -> PictureSlot:
        return PictureSlot(self.car_id, self.position)


@dataclass(frozen=True)
class ImageItem:
    """One distinct reference of an import, and every car that names it."""

    ref: str
    cars: tuple[CarRef, ...]

    def to_json(self) -> list:
        return [self.ref, [[c.car_id, c.line, c.key, c.position] for c in self.cars]]

    @classmethod
    def from_json(cls, value: list) -> "ImageItem":
        """Also reads the chunks of jobs queued before several pictures per car, whose
        cars are [car id, line, key]: their first pictures."""
        ref, cars = value
        return cls(ref, tuple(CarRef(*car) for car in cars))


@dataclass(frozen=True)
class ImageFailure:
    """Why an item got no picture, as its cars record it: a reason code and a message.

    A fetch or a check that failed (`FetchError`), and as well a render that crashed, a
    picture that could not be stored or a chunk that failed too often: those are not
    fetch errors, but the cars record them alike, so a later import retries them.
    """

    reason: ImageReason
    message: str

    @classmethod
    def of(cls, error: FetchError) -> "ImageFailure":
        return cls(error.reason, error.message)


@dataclass(frozen=True)
class ItemOutcome:
    """What became of one item: a picture by content (`new` if rendered here) or a failure."""

    item: ImageItem
    sha256: str = ""
    new: NewPicture | None = None
    failure: ImageFailure | None = None


@dataclass
class Recorded:
    """What a batch of outcomes did to the cars, counted per picture of a car (each
    place in each car's list)."""

    ok: int = 0
    failed: int = 0
    pictures_new: int = 0  # cars' pictures stored by this batch
    pictures_shared: int = 0  # cars' pictures stored before
    failures: list[ImageProblem] = field(default_factory=list)

    def add(self, other: "Recorded") -> None:
        self.ok += other.ok
        self.failed += other.failed
        self.pictures_new += other.pictures_new
        self.pictures_shared += other.pictures_shared
        self.failures += other.failures


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


def group_items(refs: Iterable[tuple[str, CarRef]]) -> list[ImageItem]:
    """One item per distinct reference, in the order references first appear."""
    by_ref: dict[str, list[CarRef]] = {}
    for ref, car in refs:
        by_ref.setdefault(ref, []).append(car)
    return [ImageItem(ref, tuple(cars)) for ref, cars in by_ref.items()]


RENDER_BACKLOG_BYTES = 256 * 1024 * 1024
# Render processes run at this lower priority: rendering keeps every core busy, and the
# fetch threads (waiting on the network, then needing a little CPU to read each image)
# would otherwise queue behind it, stretching the download window.
RENDER_NICENESS = 10


def usable_cores() -> int:
    """Cores this process may run on (a worker pinned with taskset sees its own)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class ImagePipeline:
    """Fetch threads and a render pool, set up once and used for many items.

    With `store` False (a dry run) images are fetched and checked, never rendered.
    """

    def __init__(self, *, base_dir: Path | None, workers: int, store: bool = True):
        self.base_dir = base_dir
        self.workers = workers
        self.store = store
        self.window = FetchWindow()
        self.writing = 0.0  # wall seconds in `record`: batches written (benchmarks)
        # Contents rendered by this pipeline: a later item with the same bytes shares them.
        self._rendered: set[str] = set()

    def __enter__(self) -> "ImagePipeline":
        self.render_pool = render_pool() if self.store else None
        policy = fetch_policy(settings.CARS_IMAGE_MAX_BYTES)
        self._fetcher = Fetcher(policy, max_connections=self.workers).__enter__()
        self._fetch_pool = ThreadPoolExecutor(self.workers, thread_name_prefix="fetch")
        return self

    def __exit__(self, *exc) -> None:
        self._fetch_pool.shutdown(cancel_futures=True)
        self._fetcher.__exit__(*exc)
        if self.render_pool is not None:
            self.render_pool.shutdown(cancel_futures=True)

    def record(
        self,
        outcomes: list[ItemOutcome],
        *,
        write: Callable[[list[ItemOutcome]], Recorded] | None = None,
    ) -> Recorded:
        """`write(outcomes)` (by default `record_outcomes`; a caller's own transaction
        around it), again with the items whose stored picture was deleted meanwhile fetched
        and rendered anew (the others kept as they were), up to three times."""
        write = write or record_outcomes
        started = time.monotonic()
        try:
            return self._record(outcomes, write)
        finally:
            self.writing += time.monotonic() - started

    def _record(self, outcomes: list[ItemOutcome], write) -> Recorded:
        for attempt in range(3):
            try:
                return write(outcomes)
            except PictureGone as exc:
                if attempt == 2:
                    raise
                gone = exc.sha256s
                self._rendered -= gone
                kept = [o for o in outcomes if o.sha256 not in gone]
                outcomes = kept + list(self.run([o.item for o in outcomes if o.sha256 in gone]))

    def run(self, items: Iterable[ImageItem]) -> Iterator[ItemOutcome]:
        """Every item's outcome, as it completes.

        At most `workers` fetches and `RENDER_BACKLOG_BYTES` of fetched-but-unrendered
        images are in flight, so memory stays bounded however long the CSV. A fetch
        thread that finishes starts the next fetch itself (`FetchFeed`): the fetchers stay
        busy while the caller of this generator writes a batch. A content is rendered once
        per pipeline: items with the same bytes wait for that render.
        """
        feed = FetchFeed(
            self._fetch_pool, self._fetch_hashed, items, self.workers, RENDER_BACKLOG_BYTES
        )
        rendering: dict[Future, tuple[str, int]] = {}  # -> content hash, bytes it holds
        waiting: dict[str, list[ImageItem]] = {}  # content hash -> items awaiting its render
        try:
            feed.refill()
            while feed.outstanding():
                fetched = []
                for future in feed.completed():
                    if future in rendering:
                        sha256, size = rendering.pop(future)
                        feed.release(size)
                        yield from self._rendered_outcomes(future, sha256, waiting.pop(sha256))
                    else:
                        fetched.append(future.result())
                # One query for the contents fetched meanwhile, not one per image.
                new = {sha256 for _, data, sha256, _ in fetched if data is not None}
                new -= waiting.keys() | self._rendered
                stored = stored_sha256s(new) if self.store and new else set()
                for item, data, sha256, failure in fetched:
                    if failure is not None:
                        yield ItemOutcome(item, failure=failure)
                    elif not self.store:
                        feed.release(len(data))
                        yield self._checked(item, sha256, data)
                    elif sha256 in waiting:
                        feed.release(len(data))
                        waiting[sha256].append(item)
                    elif sha256 in self._rendered or sha256 in stored:
                        feed.release(len(data))
                        yield ItemOutcome(item, sha256)
                    else:
                        try:
                            render = feed.track(
                                self.render_pool.submit, check_and_render, sha256, data
                            )
                        except BrokenExecutor as exc:
                            feed.release(len(data))
                            yield ItemOutcome(item, sha256, failure=_render_crashed(item, exc))
                            continue
                        rendering[render] = (sha256, len(data))
                        waiting[sha256] = [item]
                feed.refill()
        finally:
            feed.close()

    def _rendered_outcomes(
        self, future: Future, sha256: str, items: list[ImageItem]
    ) -> Iterator[ItemOutcome]:
        try:
            new = future.result()
        except FetchError as exc:
            new, failure = None, ImageFailure.of(exc)
        except Exception as exc:  # a render process died (killed for memory, a crash in C)
            new, failure = None, _render_crashed(items[0], exc)
        if new is None:
            yield from (ItemOutcome(item, sha256, failure=failure) for item in items)
            return
        self._rendered.add(sha256)
        first, *others = items
        yield ItemOutcome(first, sha256, new=new)
        yield from (ItemOutcome(item, sha256) for item in others)

    def _checked(self, item: ImageItem, sha256: str, data: bytes) -> ItemOutcome:
        try:
            inspect_image(data, max_pixels=settings.CARS_IMAGE_MAX_PIXELS)
        except FetchError as exc:
            return ItemOutcome(item, sha256, failure=ImageFailure.of(exc))
        return ItemOutcome(item, sha256)

    def _fetch_hashed(
        self, item: ImageItem
    ) -> tuple[ImageItem, bytes | None, str, ImageFailure | None]:
        """`_fetch` and the content hash (a fetch thread: hashlib lets go of the GIL)."""
        data, failure = self._fetch(item.ref)
        return item, data, hashlib.sha256(data).hexdigest() if data is not None else "", failure

    def _fetch(self, ref: str) -> tuple[bytes | None, ImageFailure | None]:
        """Fetch one reference (a fetch thread): (data, None) or (None, why it failed).

        The bytes are checked in the render process (`check_and_render`), which decodes
        them anyway; done here, the check held the GIL the other fetch threads need.
        """
        started = time.monotonic()
        try:
            return fetch_reference(self._fetcher, ref, base_dir=self.base_dir), None
        except FetchError as exc:
            # Only the reason and the message leave the fetch thread. The traceback holds
            # the frames, and a refused body in them, in a cycle through the future that
            # only a cyclic collection frees: 128 bombs held 1.8 GB that way.
            return None, ImageFailure.of(exc)
        finally:
            self.window.record(started, time.monotonic())


def check_and_render(sha256: str, data: bytes) -> NewPicture:
    """Check that `data` is a whole image we accept and make its renditions, not stored
    yet (a render process): the decode the renditions need is the check
    (`checked_image`). Raises FetchError when the bytes are refused."""
    with checked_image(data, max_pixels=settings.CARS_IMAGE_MAX_PIXELS) as (info, img):
        renditions = render_all(picture_name(sha256, info.extension), img)
    return NewPicture(sha256, info.extension, info.width, info.height, data, renditions)


NOT_STORED = ImageFailure(ImageReason.STORAGE_ERROR, "the image could not be stored")


def _render_crashed(item: ImageItem, exc: Exception) -> ImageFailure:
    """Recorded on the cars like any failure, so the next import retries them."""
    logger.error("rendering the image of %s crashed: %r", item.ref, exc)
    return ImageFailure(ImageReason.INVALID_IMAGE, f"rendering crashed: {exc!r}")


def render_pool():
    """One process per usable core; threads where a process may not have children.

    Celery's prefork children are daemonic processes, which multiprocessing forbids to
    fork; there (and on one core) rendering falls back to a thread pool.
    """
    cores = usable_cores()
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


def record_outcomes(
    outcomes: list[ItemOutcome],
    *,
    touch: bool = True,
) -> Recorded:
    """Write a batch of outcomes on their cars, in one transaction; return what it did.

    The catalogue stores the new pictures and locks the shared ones
    (`cars.pictures.store.store_pictures`); an outcome whose picture could not be stored
    fails with `storage_error`. Each outcome goes to its place in its cars' lists (the
    car's own picture, or a further one); the picture a place showed before is deleted
    after commit if no car shows it any more.
    Inside a caller's transaction, that one holds it all (a chunk marks itself done there
    after); without `touch` the cars' `updated_at` stays as it was. Raises PictureGone,
    with nothing written, when a picture it meant to share was deleted meanwhile.
    """
    recorded = Recorded()
    with transaction.atomic():
        new = {o.sha256: o.new for o in outcomes if o.new is not None}
        shared = {o.sha256 for o in outcomes if not o.failure and o.sha256 not in new}
        stored = store_pictures(new, shared)  # PictureGone: the batch is rolled back
        created = set(stored.created)
        updates = []
        for outcome in outcomes:
            failure = outcome.failure
            if failure is None and outcome.sha256 not in stored.ids:
                failure = NOT_STORED
            slots = [car.slot for car in outcome.item.cars]
            if failure is not None:
                recorded.failed += len(slots)
                recorded.failures += [
                    ImageProblem(
                        car.line, car.key, outcome.item.ref, failure.reason, failure.message
                    )
                    for car in outcome.item.cars
                ]
                updates.append(
                    (slots, ImageOutcome(reason=failure.reason, message=failure.message))
                )
                continue
            recorded.ok += len(slots)
            if outcome.new is not None and outcome.sha256 in created:
                created.discard(outcome.sha256)
                recorded.pictures_new += 1  # the first car of the item that stored it
                recorded.pictures_shared += len(slots) - 1
            else:
                recorded.pictures_shared += len(slots)
            picture_id = stored.ids[outcome.sha256]
            updates.append((slots, ImageOutcome(picture_id, outcome.item.ref)))
        cars_record_images(updates, touch=touch)
    return recorded


def run_items(
    pipeline: ImagePipeline,
    items: list[ImageItem],
    *,
    on_recorded: Callable[[Recorded, int], None] | None = None,
    batch: int | None = None,
) -> Recorded:
    """Run `items` through `pipeline` and record the outcomes in batches of `batch` items.

    `on_recorded(recorded, items_done)` follows each batch (progress). A batch that meets a
    picture deleted meanwhile is run again, rendering it anew.
    """
    batch = batch or settings.CARS_IMAGE_CHUNK
    total = Recorded()
    buffer: list[ItemOutcome] = []

    def flush() -> None:
        recorded = pipeline.record(list(buffer))
        total.add(recorded)
        if on_recorded:
            on_recorded(recorded, len(buffer))
        buffer.clear()

    with closing(pipeline.run(items)) as outcomes:
        for outcome in outcomes:
            buffer.append(outcome)
            if len(buffer) >= batch:
                flush()
    if buffer:
        flush()
    return total

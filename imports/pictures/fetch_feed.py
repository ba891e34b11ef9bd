"""Keeping an import's fetch threads busy, and timing them.

`ImagePipeline.run` (imports.pictures.pipeline) hands its outcomes to a caller that
writes each batch (a transaction and the pictures' files) in its own thread. Were the
fetches started only by that generator, none would start while a batch is written, and
the download window would stretch by every write. Here a fetch that ends starts the next.
"""

import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress


class FetchFeed:
    """The fetches of one `ImagePipeline.run`, started by the fetch threads themselves.

    A fetch that ends starts the next one from its own thread, so the fetchers stay busy
    while the generator's caller writes a batch (a transaction and the pictures' files);
    the generator starts fetches only at first and after it frees backlog. Every future,
    fetch or render, lands in one queue that the generator reads. At most `workers`
    fetches run, and none starts while `backlog` bytes are held by images fetched and
    not yet rendered or dropped (memory stays bounded however long the CSV).

    `fetch(item)` runs on the pool and returns a tuple whose second value is the bytes
    fetched (None if none): they count as held until `release`. `items` is advanced by
    whichever thread starts a fetch, under the lock: a list, not a database cursor.
    """

    def __init__(
        self,
        pool: ThreadPoolExecutor,
        fetch: Callable[[object], tuple],
        items: Iterable,
        workers: int,
        backlog: int,
    ):
        self._pool = pool
        self._fetch = fetch
        self._pending = iter(items)
        self._workers = workers
        self._backlog = backlog
        self._lock = threading.Lock()
        self._done: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._fetching = 0
        self._outstanding = 0  # futures started and not yet taken from `_done`
        self._held = 0  # bytes fetched and not yet released by the generator
        self._closed = False

    def refill(self) -> None:
        """Start fetches while there is room (any thread)."""
        while True:
            with self._lock:
                if self._closed or self._fetching >= self._workers or self._held >= self._backlog:
                    return
                item = next(self._pending, None)
                if item is None:
                    return
                self._fetching += 1
                self._outstanding += 1
            try:
                future = self._pool.submit(self._fetch, item)
            except RuntimeError as exc:  # the pool is shut down: the reader gets the error
                future = Future()
                future.set_exception(exc)
                self.close()
            future.add_done_callback(self._fetched)

    def _fetched(self, future: Future) -> None:
        size = 0
        if not future.cancelled() and future.exception() is None:
            data = future.result()[1]
            size = len(data) if data is not None else 0
        with self._lock:
            self._fetching -= 1
            self._held += size
        self._done.put(future)
        self.refill()

    def track(self, submit: Callable[..., Future], *args) -> Future:
        """`submit(*args)` (a render), its future read from the same queue."""
        future = submit(*args)
        with self._lock:
            self._outstanding += 1
        future.add_done_callback(self._done.put)
        return future

    def release(self, size: int) -> None:
        """`size` bytes fetched are rendered or dropped: room for more fetches."""
        with self._lock:
            self._held -= size

    def outstanding(self) -> bool:
        with self._lock:
            return self._outstanding > 0

    def completed(self) -> list[Future]:
        """The futures done since the last call: waits for one, takes the others."""
        done = [self._done.get()]
        with suppress(queue.Empty):
            while True:
                done.append(self._done.get_nowait())
        with self._lock:
            self._outstanding -= len(done)
        return done

    def close(self) -> None:
        with self._lock:
            self._closed = True


class FetchWindow:
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

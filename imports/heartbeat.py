"""Proving a process is alive: who it is ("host:pid"), a beating thread, and the check.

A lock or task whose holder stopped beating for CARS_IMPORT_HEARTBEAT_TIMEOUT seconds is
dead (SIGKILL, OOM, a lost machine); on the holder's own host a process that is gone is
known dead at once.
"""

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.utils import timezone

logger = logging.getLogger(__name__)

HOST = socket.gethostname()


def worker_id() -> str:
    """This process, as "host:pid" (read each time: Celery's pool forks)."""
    return f"{HOST}:{os.getpid()}"


def beat_interval() -> float:
    """Seconds between beats: several per timeout, so one slow beat is not a death."""
    return max(1.0, settings.CARS_IMPORT_HEARTBEAT_TIMEOUT / 6)


def stale_before() -> datetime:
    """Beats older than this are a dead holder's."""
    return timezone.now() - timedelta(seconds=settings.CARS_IMPORT_HEARTBEAT_TIMEOUT)


# A process alive on this host whose beats stopped this many timeouts ago is hung (or its
# pid was reused): dead all the same.
HUNG_AFTER = 10


def is_dead(worker: str, heartbeat_at: datetime | None) -> bool:
    """Whether the holder `worker` ("host:pid", maybe with a suffix) stopped for good.

    On this host the process table answers: gone is dead at once, alive is alive even
    when a beat is late (SQLite makes beats wait while another transaction writes).
    From another host, only the beats tell.
    """
    host, _, rest = worker.partition(":")
    pid = rest.split(":", 1)[0]
    if host == HOST and pid.isdigit():
        if not _alive(int(pid)):
            return True
        timeout = settings.CARS_IMPORT_HEARTBEAT_TIMEOUT * HUNG_AFTER
        return heartbeat_at is None or heartbeat_at < timezone.now() - timedelta(seconds=timeout)
    return heartbeat_at is None or heartbeat_at < stale_before()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its parent) is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class Heartbeat:
    """Calls `beat()` every `beat_interval()` seconds on a thread, for a `with` block.

    A beat that fails (a database briefly away, SQLite busy) is logged and tried at the
    next interval; the thread closes its own database connection when it stops.
    """

    def __init__(self, beat: Callable[[], object]):
        self._beat = beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(beat_interval()):
                try:
                    self._beat()
                except Exception as exc:
                    logger.warning("heartbeat failed: %s", exc)
        finally:
            connection.close()

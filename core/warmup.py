"""Warm a fresh server process up before it takes its first request.

Django and DRF do much of their setting up lazily: the first request of a process opens
the database connection, compiles regular expressions, imports modules (message storage,
renderers) and builds serializer fields. Measured on a fresh gunicorn worker: 15-18 ms for
its first catalogue page against 4 ms for the same uncached page once warm, and gunicorn
replaces every worker after `max_requests`. `warm_up()` pays that before the worker
accepts connections (gunicorn's `post_worker_init` hook) by sending the catalogue's list
URLs through the WSGI application itself, as if a client had asked for them.

Side effect, on purpose: those pages are in the response cache for the hosts warmed, so
the first clients of a new worker are answered from it.

The same goes on while the worker lives: an import bumps the catalogue version, which is
in every cache key, so each page would cost one uncached render again (~3-5 ms instead of
~1 ms). `CatalogWatcher`, a thread per worker, reads the version every
`CARS_API_REFRESH_INTERVAL` seconds and, when it has changed, sends the last pages the
worker served (`cars.api.caching.recent_pages`) through the application again.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import close_old_connections, connections
from django.http.request import split_domain_port, validate_host
from django.urls import reverse

from cars.platforms import get_platforms

if TYPE_CHECKING:
    from cars.api.caching import PageAddress

# gunicorn.conf.py imports this module in every project started from this folder (the
# bench's minimal project too), so nothing here imports the cars models at import time.

logger = logging.getLogger(__name__)

REQUEST_ID = "warm-up"
REFRESH_REQUEST_ID = "refresh"


def post_worker_init(worker) -> None:
    """The gunicorn hook (gunicorn.conf.py, deploy/docker/gunicorn.conf.py).

    Only a sync worker serves requests on this thread; Django's connections are per
    thread, so for any other worker class the warm-up's connection is closed. The worker
    tells the arbiter it is alive between requests, and the warm-up stops after a third
    of gunicorn's timeout, so a slow database cannot get the worker killed at boot.
    """
    from gunicorn.workers.sync import SyncWorker

    warm_up(
        worker.wsgi,
        worker.cfg.bind,
        keep_connections=isinstance(worker, SyncWorker),
        seconds=worker.cfg.timeout / 3 if worker.cfg.timeout else MAX_SECONDS,
        between=worker.notify,
    )
    start_watcher(worker.wsgi)


def start_watcher(application) -> CatalogWatcher | None:
    """The worker's CatalogWatcher, started; None when CARS_API_REFRESH_INTERVAL is 0 (or
    the settings are not this project's)."""
    interval = getattr(settings, "CARS_API_REFRESH_INTERVAL", 0)
    if interval <= 0:
        return None
    watcher = CatalogWatcher(application, interval)
    watcher.start()
    return watcher


MAX_SECONDS = 10.0


def warm_up(
    application,
    bind: list[str] | tuple[str, ...] = (),
    *,
    keep_connections: bool = True,
    seconds: float = MAX_SECONDS,
    between: Callable[[], object] = lambda: None,
) -> list[tuple[str, str, int]]:
    """GET every catalogue list URL once per host; return (host, path, status) of each.

    Hosts: the first ALLOWED_HOSTS name that is not a pattern, and each TCP address of
    `bind` (gunicorn's) that ALLOWED_HOSTS admits, as clients reaching the process
    directly would write it. No request starts after `seconds`; `between` runs before
    each. Nothing is raised: a failure is logged and the worker starts cold, as it would
    have anyway.
    """
    done = []
    deadline = time.monotonic() + seconds
    try:
        hosts = warm_up_hosts(bind)
        paths = [
            reverse("car-list"),
            *(reverse("car-platform-list", args=[name]) for name in get_platforms()),
        ]
        for host, path in ((host, path) for host in hosts for path in paths):
            if time.monotonic() > deadline:
                logger.warning("warm-up stopped after %.0f s", seconds)
                break
            between()
            done.append((host, path, _get(application, host, path)))
        logger.info("warmed up: %s", ", ".join(f"{h}{p} {s}" for h, p, s in done) or "no host")
    except Exception:
        logger.warning("warm-up failed; the first requests will be slower", exc_info=True)
    finally:
        if not keep_connections:
            connections.close_all()
    return done


def warm_up_hosts(bind: list[str] | tuple[str, ...] = ()) -> list[str]:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # what Django admits then
    hosts = [name for name in allowed if name != "*" and not name.startswith(".")][:1]
    for address in bind:
        if address.startswith(("unix:", "fd://")):
            continue
        domain, _port = split_domain_port(address)
        if domain in ("0.0.0.0", "[::]", ""):
            continue
        if validate_host(domain, allowed) and address not in hosts:
            hosts.append(address)
    return hosts


class CatalogWatcher(threading.Thread):
    """Renders the worker's recent pages again soon after each import (a daemon thread).

    One version query every `interval` seconds, on this thread's own database connection;
    nothing else while the catalogue does not change. The pages are rendered by the
    application itself, like the warm-up's, so they are exactly what a client would get.
    A client asking within that interval still gets a correct page, rendered for it.
    """

    def __init__(self, application, interval: float):
        super().__init__(name="catalog-watcher", daemon=True)
        self.application = application
        self.interval = interval
        self.seen: int | None = None
        self.refreshed = 0  # times the pages were rendered again (tests, logs)
        self._stopping = threading.Event()
        self._failing = False

    def run(self) -> None:
        try:
            while not self._stopping.wait(self.interval):
                try:
                    # What Django does around every request: drop a connection that broke
                    # (a database restart) or outlived CONN_MAX_AGE, and health-check the
                    # next one, so the watcher recovers instead of failing forever.
                    close_old_connections()
                    self.check()
                    self._failing = False
                except Exception:
                    if not self._failing:  # once per failure streak, not every interval
                        logger.warning("checking the catalogue version failed", exc_info=True)
                    self._failing = True
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self._stopping.set()

    def check(self) -> list[tuple[str, str, int]]:
        """Read the version; if it moved since the last check, render the pages again."""
        from cars.api.caching import recent_pages
        from cars.catalog import catalog_version

        version = catalog_version()
        if self.seen is None or version == self.seen:
            self.seen = version
            return []
        done = [
            (page.host, _target(page), _get(self.application, page.host, page.path, page=page))
            for page in recent_pages.snapshot()
        ]
        self.seen = version  # only now: a refresh that raised is tried again next time
        self.refreshed += 1
        logger.info("catalogue version %s: %d recent pages rendered again", version, len(done))
        return done


def _target(page: PageAddress) -> str:
    return f"{page.path}?{page.query}" if page.query else page.path


def _get(application, host: str, path: str, *, page: PageAddress | None = None) -> int:
    """GET through `application`: the warm-up's list URL, or a `page` a client asked for."""
    # The warm-up asks as clients behind the TLS proxy would; a page as it was asked.
    https = bool(settings.SECURE_PROXY_SSL_HEADER) if page is None else page.https
    domain, port = split_domain_port(host)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": page.query if page else "",
        "SERVER_NAME": domain or "localhost",
        "SERVER_PORT": port or ("443" if https else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "HTTP_X_REQUEST_ID": REQUEST_ID if page is None else REFRESH_REQUEST_ID,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "https" if https else "http",
    }
    if https and settings.SECURE_PROXY_SSL_HEADER:
        header, value = settings.SECURE_PROXY_SSL_HEADER
        environ[header] = value
    status = []
    body = application(environ, lambda line, headers, exc_info=None: status.append(line))
    try:
        for _ in body:
            pass
    finally:
        if hasattr(body, "close"):
            body.close()  # request_finished: what Django does after every response
    return int(status[0].split()[0])

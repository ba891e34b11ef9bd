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
"""

import io
import logging
import sys
import time
from collections.abc import Callable

from django.conf import settings
from django.db import connections
from django.http.request import split_domain_port, validate_host
from django.urls import reverse

from cars.platforms import get_platforms

logger = logging.getLogger(__name__)

REQUEST_ID = "warm-up"


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


def _get(application, host: str, path: str) -> int:
    https = bool(settings.SECURE_PROXY_SSL_HEADER)  # behind TLS: warm what clients ask
    domain, port = split_domain_port(host)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": domain or "localhost",
        "SERVER_PORT": port or ("443" if https else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "HTTP_X_REQUEST_ID": REQUEST_ID,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "https" if https else "http",
    }
    if https:
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

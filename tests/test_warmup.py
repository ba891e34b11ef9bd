"""The worker warm-up and refresher (core/warmup.py): hosts, what they fill, gunicorn runs them."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from django.core.handlers.wsgi import WSGIHandler

from cars.api.caching import PageAddress, RecentPages, recent_pages, recent_responses
from cars.catalog import bump_catalog_version
from cars.models import Car
from core.warmup import CatalogWatcher, start_watcher, warm_up, warm_up_hosts
from tests.support.catalog import write_csv
from tests.support.project import ROOT, manage, migrate, project_env, run
from tests.support.stack import free_port

GUNICORN = str(Path(sys.executable).parent / "gunicorn")


def _fail_if_rendered(monkeypatch) -> None:
    """From now on a page that is not in the cache answers 500."""
    from cars.api import views

    monkeypatch.setattr(views.CarListView, "get", lambda *args, **kwargs: 1 / 0)


@pytest.mark.parametrize(
    ("allowed", "debug", "bind", "expected"),
    [
        (["cars.example.com", "localhost"], False, ["0.0.0.0:8000"], ["cars.example.com"]),
        (["127.0.0.1"], False, ["127.0.0.1:8123"], ["127.0.0.1", "127.0.0.1:8123"]),
        ([".example.com", "*"], False, ["10.0.0.5:80"], ["10.0.0.5:80"]),
        (["cars.example.com"], False, ["unix:/tmp/g.sock", "[::]:8000"], ["cars.example.com"]),
        (["cars.example.com"], False, ["127.0.0.1:8000"], ["cars.example.com"]),  # not allowed
        ([], True, ["127.0.0.1:8000"], ["127.0.0.1", "127.0.0.1:8000"]),
        ([], False, ["127.0.0.1:8000"], []),  # nothing would be admitted
    ],
)
def test_the_hosts_warmed_are_those_clients_will_use_and_django_admits(
    settings, allowed, debug, bind, expected
):
    settings.ALLOWED_HOSTS, settings.DEBUG = allowed, debug
    assert warm_up_hosts(bind) == expected


# transaction=True: the warm-up goes through the WSGI handler itself, whose request
# signals close the connection (as in a real worker), which would end a test transaction.
@pytest.mark.django_db(transaction=True)
def test_warm_up_fills_the_response_cache_for_every_list_url_and_host(settings, monkeypatch):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    Car.objects.create(external_key="k1", title="Warm Car", description="ready")

    done = warm_up(WSGIHandler(), ["127.0.0.1:8123"])

    paths = ["/api/cars/", "/api/cars/default/", "/api/cars/web/", "/api/cars/mobile/"]
    assert sorted(done) == sorted(
        (host, path, 200) for host in ("127.0.0.1", "127.0.0.1:8123") for path in paths
    )
    assert len(recent_responses) == 8
    _fail_if_rendered(monkeypatch)
    from django.test import Client

    response = Client().get("/api/cars/web/", HTTP_HOST="127.0.0.1:8123")
    assert response.status_code == 200  # from the cache: the view would have failed
    assert response.json()[0]["title"] == "Warm Car"


@pytest.mark.django_db
def test_a_failing_warm_up_is_logged_and_the_worker_starts_anyway(settings, caplog):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]

    def broken(environ, start_response):
        raise RuntimeError("database is down")

    assert warm_up(broken) == []
    assert "warm-up failed" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_warm_up_reports_liveness_between_requests_and_stops_at_its_deadline(settings, caplog):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    beats = []

    assert len(warm_up(WSGIHandler(), between=lambda: beats.append(1))) == len(beats) == 4
    assert warm_up(WSGIHandler(), seconds=-1, between=lambda: beats.append(1)) == []
    assert len(beats) == 4 and "warm-up stopped" in caplog.text


@contextlib.contextmanager
def warmed_gunicorn(env: dict[str, str], log: Path) -> Iterator[tuple[int, Callable]]:
    """gunicorn (one worker) from the project folder, once its warm-up is logged.

    Yields its port and `wait_for(text)`, which waits until the log shows `text`."""
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [GUNICORN, "config.wsgi", "-w", "1", "-b", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60

    def wait_for(text: str) -> None:
        while text not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)

    try:
        wait_for("warmed up")
        yield port, wait_for
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_gunicorn_started_from_the_project_folder_warms_its_workers_up(tmp_path):
    """The project's gunicorn.conf.py is read by default: the hook runs before serving."""
    env = project_env(tmp_path, ALLOWED_HOSTS="127.0.0.1", DEBUG="false", LOG_LEVEL="INFO")
    migrate(env)
    log = tmp_path / "gunicorn.log"
    with warmed_gunicorn(env, log) as (port, _):
        response = httpx.get(f"http://127.0.0.1:{port}/api/cars/web/", timeout=10)
        assert response.status_code == 200 and response.json() == []
    warmed = next(line for line in log.read_text().splitlines() if "warmed up" in line)
    assert f"127.0.0.1:{port}/api/cars/web/ 200" in warmed
    assert "127.0.0.1/api/cars/ 200" in warmed


# --- the refresher: pages rendered again after an import -----------------------------------


@contextlib.contextmanager
def running(watcher: CatalogWatcher) -> Iterator[Callable]:
    """The watcher's thread, stopped and joined on exit. Yields `wait_until(condition)`,
    which waits (10 s at most) until `condition()` is true."""
    deadline = time.monotonic() + 10

    def wait_until(condition: Callable[[], bool]) -> None:
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    watcher.start()
    try:
        yield wait_until
    finally:
        watcher.stop()
        watcher.join(timeout=10)
    assert not watcher.is_alive()


@pytest.mark.django_db(transaction=True)
def test_after_an_import_the_pages_clients_asked_for_are_rendered_again_before_they_ask(
    settings, monkeypatch
):
    settings.ALLOWED_HOSTS = ["testserver", "cars.example.com"]
    Car.objects.create(external_key="k1", title="Old Car")
    from django.test import Client

    client = Client()
    assert client.get("/api/cars/web/?limit=5").status_code == 200
    assert client.get("/api/cars/", HTTP_HOST="cars.example.com").status_code == 200
    client.get("/api/cars/mobile/", HTTP_ORIGIN="https://app.example.com")  # CORS: not kept
    assert [(p.host, p.path, p.query) for p in recent_pages.snapshot()] == [
        ("testserver", "/api/cars/web/", "limit=5"),
        ("cars.example.com", "/api/cars/", ""),
    ]
    watcher = CatalogWatcher(WSGIHandler(), interval=60)
    assert watcher.check() == []  # the first check only learns the version
    assert watcher.check() == []  # nothing changed: nothing rendered

    Car.objects.create(external_key="k2", title="New Car")
    bump_catalog_version()  # what an import does in its transaction
    refreshed = watcher.check()

    assert refreshed == [
        ("testserver", "/api/cars/web/?limit=5", 200),
        ("cars.example.com", "/api/cars/", 200),
    ]
    assert watcher.refreshed == 1 and watcher.check() == []
    _fail_if_rendered(monkeypatch)
    page = client.get("/api/cars/web/?limit=5")
    assert page.status_code == 200  # from the cache: the view would have failed
    assert [car["title"] for car in page.json()] == ["Old Car", "New Car"]
    assert client.get("/api/cars/", HTTP_HOST="cars.example.com").json()[1]["title"] == "New Car"


@pytest.mark.django_db(transaction=True)
def test_the_watcher_thread_refreshes_soon_after_a_change_and_retries_a_failed_refresh(
    settings, caplog
):
    settings.ALLOWED_HOSTS = ["testserver"]
    from django.test import Client

    Client().get("/api/cars/web/")
    calls = []
    handler = WSGIHandler()

    def application(environ, start_response):
        calls.append(environ["PATH_INFO"])
        if len(calls) == 1:
            raise RuntimeError("the first refresh breaks")
        return handler(environ, start_response)

    watcher = CatalogWatcher(application, interval=0.02)
    with running(watcher) as wait_until:
        wait_until(lambda: watcher.seen is not None)
        bump_catalog_version()
        wait_until(lambda: watcher.refreshed > 0)
    assert watcher.refreshed == 1, caplog.text
    assert calls == ["/api/cars/web/", "/api/cars/web/"]  # failed, then tried again
    assert "checking the catalogue version failed" in caplog.text


def test_the_hook_module_loads_in_a_project_without_the_cars_app(tmp_path):
    """gunicorn.conf.py is read by any project started from this folder (the bench's
    minimal one has no apps): importing the hook must not import the cars models."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.minimal.settings"}
    env["BENCH_DB"] = str(tmp_path / "db.sqlite3")
    code = "import django; django.setup(); import core.warmup as w; print(w.start_watcher(None))"
    result = run(["-c", code], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "None"  # no CARS_API_REFRESH_INTERVAL: no watcher


def test_the_watcher_starts_only_when_its_interval_is_set(settings):
    settings.CARS_API_REFRESH_INTERVAL = 0
    assert start_watcher(WSGIHandler()) is None
    settings.CARS_API_REFRESH_INTERVAL = 30
    watcher = start_watcher(WSGIHandler())
    try:
        assert watcher is not None and watcher.is_alive() and watcher.daemon
    finally:
        watcher.stop()
        watcher.join(timeout=10)


@pytest.mark.django_db(transaction=True)
def test_the_watcher_recovers_when_the_database_drops_its_connection(settings):
    """PostgreSQL: the server ends the watcher's session (a restart, a failover); the next
    checks reconnect and the refresh after an import still happens."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("needs a database server that can end another session")
    settings.ALLOWED_HOSTS = ["testserver"]
    from django.test import Client

    Client().get("/api/cars/web/")
    watcher = CatalogWatcher(WSGIHandler(), interval=0.02)
    with running(watcher) as wait_until:
        wait_until(lambda: watcher.seen is not None)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchall(), "the watcher had no session to end"
        time.sleep(0.1)  # a few checks on the dead connection
        bump_catalog_version()
        wait_until(lambda: watcher.refreshed > 0)
    assert watcher.refreshed == 1


def test_recent_pages_keep_the_newest_addresses_up_to_their_limit():
    pages = RecentPages(limit=2)
    a, b, c = (PageAddress("h", f"/api/cars/{n}/", "", False) for n in "abc")
    for address in (a, b, a, c):
        pages.add(address)
    assert pages.snapshot() == [a, c]
    off = RecentPages(limit=0)
    off.add(a)
    assert off.snapshot() == []


def test_a_running_gunicorn_renders_its_pages_again_after_an_import(tmp_path):
    """End to end: gunicorn's workers watch the version; an import (another process) bumps it."""
    env = project_env(
        tmp_path,
        ALLOWED_HOSTS="127.0.0.1",
        DEBUG="false",
        LOG_LEVEL="INFO",
        CARS_API_REFRESH_INTERVAL="0.1",
    )
    migrate(env)
    log = tmp_path / "gunicorn.log"
    with warmed_gunicorn(env, log) as (port, wait_for):
        url = f"http://127.0.0.1:{port}/api/cars/web/?limit=7"
        assert httpx.get(url, timeout=10).json() == []
        csv_path = write_csv(tmp_path / "cars.csv", [["c1", "Fresh Car", "just in", ""]])
        imported = manage(env, "import_csv", str(csv_path), "--no-progress")
        assert imported.returncode == 0, imported.stderr
        wait_for("recent pages rendered again")
        page = httpx.get(url, timeout=10)
        assert [car["title"] for car in page.json()] == ["Fresh Car"]
    refreshed = next(line for line in log.read_text().splitlines() if "rendered again" in line)
    # 4 lists warmed for 2 hosts (127.0.0.1, the bound address), and the page asked for.
    assert "9 recent pages rendered again" in refreshed

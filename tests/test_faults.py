"""Fault injection: each test breaks one real thing mid-way and asserts that nothing is lost
and nothing is duplicated.

- the database connection is killed mid-import (PostgreSQL's pg_terminate_backend, from
  another connection, while the import's transaction is writing rows);
- (the Celery worker SIGKILLed mid-import: tests/test_crashes.py);
- Redis stops while the web process serves;
- the media storage raises on write (disk full);
- an image server trickles its answer (slow-loris).

The process-level tests start real processes on real PostgreSQL / Redis and are marked
``stack`` like tests/test_stack.py (skipped without the services, failed under
REQUIRE_SERVICES=1, not run twice by .ci/run).
"""

import errno
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from cars.models import Car, ImageStatus, Picture
from cars.pictures.reasons import ImageReason
from imports.models import ImportJob
from imports.services import run_import
from tests.support.images import jpeg_bytes, photo_like, png_bytes
from tests.support.project import manage, project_env
from tests.support.stack import (
    ROOT,
    free_port,
    fresh_database,
    missing,
    postgres_available,
    running_stack,
)

pytestmark = pytest.mark.faults


# --- the database goes away mid-import ------------------------------------------------------


def _backend_writing_cars(admin, database: str) -> int | None:
    """The pid of the backend whose open transaction has written to cars_car, if any."""
    row = admin.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_xid IS NOT NULL "
        "AND pid <> pg_backend_pid() AND query ILIKE '%%cars_car%%'",
        [database],
    ).fetchone()
    return row[0] if row else None


@pytest.mark.stack
def test_a_database_connection_killed_mid_import_leaves_no_partial_rows(tmp_path):
    if not postgres_available():
        missing("PostgreSQL")
    import psycopg

    with fresh_database(tmp_path) as (database_url, query):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_"))}
        env.pop("REDIS_URL", None)
        env.pop("CELERY_BROKER_URL", None)  # no broker: the import runs in the command
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.development",
            DATABASE_URL=database_url,
            MEDIA_ROOT=str(tmp_path / "media"),
            LOG_LEVEL="WARNING",
        )
        assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
        baseline = tmp_path / "baseline.csv"
        baseline.write_text("id,title\n1,Alpha\n2,Beta\n3,Gamma\n")
        assert manage(env, "import_csv", str(baseline), "--no-progress").returncode == 0
        before = query("SELECT id, external_key, title, updated_at FROM cars_car ORDER BY id")

        big = tmp_path / "big.csv"
        rows = "".join(f"{i},Car {i},Description {i}\n" for i in range(1, 50_001))
        big.write_text("id,title,description\n" + rows)  # rows 1-3 update, the rest insert
        process = subprocess.Popen(
            [sys.executable, "manage.py", "import_csv", str(big), "--no-progress"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        killed = None
        database = database_url.rsplit("/", 1)[1]
        with psycopg.connect(
            database_url.rsplit("/", 1)[0] + "/postgres", autocommit=True
        ) as admin:
            deadline = time.monotonic() + 60
            while killed is None and process.poll() is None and time.monotonic() < deadline:
                pid = _backend_writing_cars(admin, database)
                if pid is not None:
                    admin.execute("SELECT pg_terminate_backend(%s)", [pid])
                    killed = pid
                time.sleep(0.005)
        out, err = process.communicate(timeout=60)

        assert killed is not None, "the import finished before its connection could be killed"
        assert process.returncode == 1, (process.returncode, out, err[-2000:])
        after = query("SELECT id, external_key, title, updated_at FROM cars_car ORDER BY id")
        assert after == before, "rows of the killed transaction survived"
        # Django closes the broken connection when the transaction fails, so the job's
        # outcome is recorded on a new one.
        jobs = query("SELECT status, error FROM imports_importjob ORDER BY id")
        assert [status for status, _ in jobs] == ["succeeded", "failed"], jobs
        assert "OperationalError" in jobs[1][1] or "terminat" in jobs[1][1], jobs

        # The database is back: the same import completes, nothing duplicated.
        result = manage(env, "import_csv", str(big), "--no-progress", timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        assert (
            result.stdout.strip()
            .splitlines()[-1]
            .startswith("created 49997, updated 3, unchanged 0")
        )
        assert query("SELECT count(*), count(DISTINCT external_key) FROM cars_car") == [
            (50_000, 50_000)
        ]


@pytest.mark.django_db
def test_the_command_reports_a_database_failure_in_one_line(tmp_path, monkeypatch):
    from django.core.management import CommandError, call_command
    from django.db import OperationalError

    import imports.runner

    def dead_database(**kwargs):
        raise OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(imports.runner, "apply_source", dead_database)
    source = tmp_path / "cars.csv"
    source.write_text("id,title\n1,Alpha\n")
    with pytest.raises(CommandError) as excinfo:
        call_command("import_csv", str(source), "--no-progress")
    assert excinfo.value.returncode == 1
    assert "terminating connection" in str(excinfo.value)
    assert ImportJob.objects.get().status == ImportJob.Status.FAILED


# --- Redis stops while the web process serves ------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    """A Redis server of this test's own, on a free port: stopping it touches nothing else."""
    if shutil.which("redis-server") is None:
        missing("redis-server")
    port = free_port()
    pidfile = tmp_path / "redis.pid"

    def start() -> None:
        subprocess.run(
            [
                *("redis-server", "--port", str(port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--daemonize", "yes"),
                *("--pidfile", str(pidfile), "--dir", str(tmp_path)),
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(50):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout:
                return
            time.sleep(0.1)
        raise AssertionError("own redis-server did not start")

    def stop() -> None:
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], capture_output=True)
        for _ in range(50):
            if pidfile.exists() is False:
                break
            time.sleep(0.1)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    stop()


@pytest.mark.stack
def test_reads_keep_working_and_readyz_names_the_cache_when_redis_stops(tmp_path, own_redis):
    redis_url, start_redis, stop_redis = own_redis
    catalog = tmp_path / "catalog"
    (catalog / "img").mkdir(parents=True)
    (catalog / "img" / "a.png").write_bytes(png_bytes(40, 30))
    (catalog / "cars.csv").write_text("id,title,image\n1,Alpha,img/a.png\n2,Beta,\n")
    with running_stack(tmp_path / "stack", {"REDIS_URL": redis_url}, beat=False) as stack:
        stack.manage("import_csv", str(catalog / "cars.csv"), "--no-progress")
        paths = ["/api/cars/", "/api/cars/web/", "/api/cars/1/", "/api/cars/mobile/2/"]
        healthy = {path: stack.cars_json(path) for path in paths}
        assert stack.get("/readyz").status_code == 200

        stop_redis()
        for path in paths:
            started = time.monotonic()
            assert stack.cars_json(path) == healthy[path], path
            assert time.monotonic() - started < 5, f"{path} waited on the dead Redis"
        ready = stack.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["failed"] == ["cache"]
        assert stack.get("/healthz").status_code == 200

        start_redis()
        stack.wait_for("readyz to recover", lambda: stack.get("/readyz").status_code == 200, 30)
        assert stack.cars_json("/api/cars/") == healthy["/api/cars/"]


# --- the media storage fails on write ---------------------------------------------------------


@pytest.fixture
def catalog(tmp_path):
    folder = tmp_path / "catalog"
    (folder / "img").mkdir(parents=True)
    (folder / "img" / "a.jpg").write_bytes(photo_like(320, 240, seed=2))
    (folder / "img" / "b.png").write_bytes(png_bytes(40, 30, mode="RGBA"))
    (folder / "cars.csv").write_text(
        "id,title,image\n1,Alpha,img/a.jpg\n2,Beta,img/b.png\n3,Gamma,\n"
    )
    return folder / "cars.csv"


@pytest.mark.django_db
@pytest.mark.parametrize("failing_write", [1, 2], ids=["original", "rendition"])
def test_a_storage_failing_on_write_keeps_the_car_and_a_later_import_retries(
    catalog, monkeypatch, settings, failing_write
):
    """The disk fills up (ENOSPC): the first write of each picture (the original), or the
    second (its first rendition), raises, as FileSystemStorage would.

    Writes are counted per picture, which its files name by content: the original is
    `images/<sha256>.<ext>`, its renditions `CACHE/images/<sha256>/<spec hash>.jpg`."""
    from django.core.files.storage import FileSystemStorage

    real_save = FileSystemStorage._save
    writes: dict[str, int] = {}

    def disk_full(self, name, content):
        parts = Path(name).with_suffix("").parts
        picture = next(p for p in parts if re.fullmatch(r"[0-9a-f]{64}", p))
        writes[picture] = writes.get(picture, 0) + 1
        if writes[picture] == failing_write:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, name, content)

    monkeypatch.setattr(FileSystemStorage, "_save", disk_full)
    report = run_import(source=str(catalog))

    assert Car.objects.count() == 3
    assert report.counts.images_failed == 2
    assert {f.reason for f in report.image_failures} == {ImageReason.STORAGE_ERROR}
    for car in Car.objects.exclude(source_image_url=""):
        assert (car.image_status, car.image_error) == (ImageStatus.FAILED, "storage_error")
        assert car.picture is None and not car.image and car.renditions == {}
    assert sorted(writes.values()) == [failing_write, failing_write], "one failure per picture"
    assert not Picture.objects.exists(), "a picture whose files failed was kept"
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()], "half-written files left behind"

    monkeypatch.setattr(FileSystemStorage, "_save", real_save)  # space freed
    again = run_import(source=str(catalog))
    assert (again.counts.created, again.counts.images_ok, again.counts.images_failed) == (0, 2, 0)
    for car in Car.objects.exclude(source_image_url=""):
        assert car.image_status == ImageStatus.READY and car.image_error is None
        assert (media / car.image.name).is_file()
        assert all((media / r["name"]).is_file() for r in car.renditions.values())
    assert Car.objects.count() == 3


# --- a slow-loris image server -----------------------------------------------------------------


@pytest.mark.django_db
def test_an_image_server_trickling_bytes_is_cut_off_by_the_total_timeout(
    http_server, tmp_path, settings
):
    settings.CARS_FETCH_TIMEOUT = 1.5
    settings.CARS_FETCH_RETRIES = 2
    # ~1 byte every 50 ms: every read is well within the per-read timeout, so only the
    # request's total deadline can stop it (the whole body would take ~40 minutes).
    http_server.add("/slow.jpg", jpeg_bytes(320, 240), chunk_delay=0.05, chunk_size=1)
    http_server.add("/fast.jpg", jpeg_bytes(64, 48))
    source = tmp_path / "cars.csv"
    source.write_text(
        "id,title,image\n"
        f"1,Slow,{http_server.url('/slow.jpg')}\n"
        f"2,Fast,{http_server.url('/fast.jpg')}\n"
    )

    started = time.monotonic()
    report = run_import(source=str(source))
    elapsed = time.monotonic() - started

    assert elapsed < 1.5 + 3, f"the import waited {elapsed:.1f} s on a trickling server"
    assert http_server.hits["/slow.jpg"] == 1, "a server that trickles is not asked again"
    slow = Car.objects.get(external_key="1")
    assert (slow.image_status, slow.image_error) == (ImageStatus.FAILED, "unreachable")
    assert Car.objects.get(external_key="2").image_status == ImageStatus.READY
    assert [f.reason for f in report.image_failures] == ["unreachable"]
    assert ImportJob.objects.count() == 0  # run_import alone records no job


def test_a_trickling_csv_source_is_cut_off_too(http_server, tmp_path):
    """The CSV itself, over HTTP: the import fails (exit 1) within the timeout."""
    http_server.add("/cars.csv", b"id,title\n" + b"1,A\n" * 2000, chunk_delay=0.05, chunk_size=4)
    env = project_env(tmp_path, CARS_FETCH_TIMEOUT="1.5")
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    started = time.monotonic()
    result = manage(env, "import_csv", http_server.url("/cars.csv"), "--no-progress")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    assert "unreachable" in result.stderr and "1.5 s" in result.stderr
    assert elapsed < 15  # the interpreter and Django start-up included
    assert httpx is not None

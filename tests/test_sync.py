"""The periodic sync and the per-source lock, with a real HTTP server and database."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cars.models import Car
from imports.heartbeat import HOST, worker_id
from imports.lifecycle import SourceBusy, acquire, beat, create_job, lock_key, release
from imports.models import ImportJob, SourceLock, SourceState
from imports.runner import run_job as execute_job
from imports.runner import run_job as run_row_phase
from imports.sync import sync_source
from tests.support.images import jpeg_bytes

pytestmark = pytest.mark.django_db

WRITES = ("INSERT", "UPDATE", "DELETE")


def writes(queries: CaptureQueriesContext) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)
    ]


@pytest.fixture
def csv_server(http_server):
    http_server.add("/car.jpg", jpeg_bytes(200, 100))

    def publish(body: str, etag: str = '"v1"'):
        http_server.add(
            "/cars.csv",
            body.encode(),
            headers={"ETag": etag, "Last-Modified": "Wed, 25 Nov 2026 10:00:00 GMT"},
        )

    image = http_server.url("/car.jpg")
    publish(f"id,title,image\n1,One,{image}\n2,Two,\n")
    http_server.publish = publish
    http_server.image = image
    return http_server


def test_first_sync_imports_and_remembers_the_validators(csv_server, settings):
    settings.CARS_CSV_SOURCE = csv_server.url("/cars.csv")

    job = sync_source()

    assert job.trigger == ImportJob.Trigger.SYNC and job.status == ImportJob.Status.SUCCEEDED
    assert job.counts["created"] == 2 and job.counts["images_ok"] == 1
    state = SourceState.objects.get(source=settings.CARS_CSV_SOURCE)
    assert state.etag == '"v1"' and state.last_modified.startswith("Wed, 25 Nov 2026")
    assert csv_server.hits["/cars.csv"] == 1, "the fetched bytes are imported, not fetched again"


def test_unchanged_source_costs_one_conditional_request_and_no_write(csv_server, settings):
    settings.CARS_CSV_SOURCE = csv_server.url("/cars.csv")
    sync_source()

    with CaptureQueriesContext(connection) as queries:
        assert sync_source() is None

    assert writes(queries) == []
    assert csv_server.hits["/cars.csv"] == 2
    assert csv_server.headers("/cars.csv")[-1].get("If-None-Match") == '"v1"'
    assert ImportJob.objects.count() == 1


def test_changed_source_is_imported_and_removed_rows_pruned(csv_server, settings):
    settings.CARS_CSV_SOURCE = csv_server.url("/cars.csv")
    sync_source()
    csv_server.publish(f"id,title,image\n1,One renamed,{csv_server.image}\n3,Three,\n", etag='"v2"')

    job = sync_source()

    assert job.counts == {
        "created": 1,
        "updated": 1,
        "unchanged": 0,
        "deleted": 1,
        "rejected": 0,
        "images_ok": 0,
        "images_failed": 0,
    }
    assert sorted(Car.objects.values_list("title", flat=True)) == ["One renamed", "Three"]
    assert csv_server.hits["/car.jpg"] == 1, "an unchanged image URL is not fetched again"


def test_same_bytes_under_a_new_etag_write_nothing(csv_server, settings):
    settings.CARS_CSV_SOURCE = csv_server.url("/cars.csv")
    sync_source()
    csv_server.publish(f"id,title,image\n1,One,{csv_server.image}\n2,Two,\n", etag='"v1-gzip"')

    with CaptureQueriesContext(connection) as queries:
        assert sync_source() is None
    assert writes(queries) == []


def test_a_failed_sync_is_retried_by_the_next_one(csv_server, settings):
    settings.CARS_CSV_SOURCE = csv_server.url("/cars.csv")
    csv_server.publish("not,a,cars,file\n1,2,3,4\n", etag='"bad"')

    job = sync_source()
    assert job.status == ImportJob.Status.FAILED and "title" in job.error
    assert not SourceState.objects.exists(), "validators are kept only after a success"

    csv_server.publish("title\nFixed\n", etag='"bad"')  # same ETag, fixed content
    assert sync_source().status == ImportJob.Status.SUCCEEDED


def test_local_file_source_unchanged_means_no_write(tmp_path, settings):
    source = tmp_path / "cars.csv"
    source.write_text("title\nA\nB\n")
    settings.CARS_CSV_SOURCE = str(source)
    assert sync_source().counts["created"] == 2

    with CaptureQueriesContext(connection) as queries:
        assert sync_source() is None
    assert writes(queries) == []

    source.write_text("title\nA\nB\nC\n")
    assert sync_source().counts["created"] == 1


def test_unreadable_source_writes_nothing(settings, tmp_path):
    settings.CARS_CSV_SOURCE = str(tmp_path / "missing.csv")
    with CaptureQueriesContext(connection) as queries:
        assert sync_source() is None
    assert writes(queries) == []


# --- the lock -----------------------------------------------------------------------------


def running_job(source: str) -> ImportJob:
    """A job some process is running (its row phase, or its chunks)."""
    job = create_job(source=source)
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.RUNNING, started_at=timezone.now()
    )
    job.refresh_from_db()
    return job


def gone_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def assert_still_running(job: ImportJob) -> None:
    job.refresh_from_db()
    assert (job.status, job.error, job.finished_at) == (ImportJob.Status.RUNNING, "", None)


def test_a_source_lock_is_exclusive_until_released():
    holder = running_job("s")
    acquire(holder)
    waiting = create_job(source="s")

    with pytest.raises(SourceBusy):
        acquire(waiting)
    acquire(holder)  # the holder may take it again (its task delivered once more)
    acquire(create_job(source="other"))  # locks are per source
    assert SourceLock.objects.get(key=lock_key("s")).job_id == holder.pk

    release(holder.pk)
    acquire(waiting)
    lock = SourceLock.objects.get(key=lock_key("s"))
    assert (lock.job_id, lock.worker) == (waiting.pk, worker_id())
    assert_still_running(holder)  # released, not abandoned: nobody marks it failed


def test_a_live_holder_keeps_the_lock_while_it_beats(settings):
    """A beat younger than the timeout is alive; so is a process of another host, which
    cannot be checked from here, until its beat is stale."""
    settings.CARS_IMPORT_HEARTBEAT_TIMEOUT = 60
    holder = running_job("s")
    acquire(holder)
    contender = create_job(source="s")

    SourceLock.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=50))
    with pytest.raises(SourceBusy):
        acquire(contender)
    SourceLock.objects.update(heartbeat_at=timezone.now() - timedelta(seconds=61))
    beat(holder.pk)  # the holder's heartbeat thread: alive again
    with pytest.raises(SourceBusy):
        acquire(contender)
    SourceLock.objects.update(worker=f"another-host.example:{gone_pid()}")
    with pytest.raises(SourceBusy):
        acquire(contender)

    assert SourceLock.objects.get().job_id == holder.pk
    assert_still_running(holder)
    contender.refresh_from_db()
    assert contender.status == ImportJob.Status.QUEUED


@pytest.mark.parametrize("death", ["stale heartbeat", "pid gone on this host"])
def test_a_dead_holder_is_taken_over_and_its_job_marked_failed(settings, death):
    settings.CARS_IMPORT_HEARTBEAT_TIMEOUT = 60
    holder = running_job("s")
    acquire(holder)
    if death == "stale heartbeat":  # SIGKILL, OOM, a lost machine: no beat for the timeout
        stale = timezone.now() - timedelta(seconds=61)
        SourceLock.objects.update(worker="another-host.example:1", heartbeat_at=stale)
    else:  # on this host a process that is gone is known dead at once, whatever its beat
        SourceLock.objects.update(worker=f"{HOST}:{gone_pid()}", heartbeat_at=timezone.now())
    job = create_job(source="s")

    acquire(job)

    lock = SourceLock.objects.get()
    assert (lock.job_id, lock.worker) == (job.pk, worker_id())
    holder.refresh_from_db()
    assert holder.status == ImportJob.Status.FAILED and holder.finished_at is not None
    assert holder.error.startswith("abandoned"), holder.error
    assert f"import #{job.pk} took the source over" in holder.error


def test_a_lock_left_by_an_ended_job_does_not_block():
    holder = running_job("s")
    acquire(holder)
    ImportJob.objects.filter(pk=holder.pk).update(status=ImportJob.Status.SUCCEEDED, error="")

    job = create_job(source="s")
    acquire(job)

    assert SourceLock.objects.get().job_id == job.pk
    holder.refresh_from_db()
    assert (holder.status, holder.error) == (ImportJob.Status.SUCCEEDED, ""), "left as it ended"


def test_a_second_import_of_a_locked_source_is_refused(tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text("title\nA\n")
    holder = running_job(str(source))
    acquire(holder)  # another import, alive (this process, beating), holds the source

    job = create_job(source=str(source))
    with pytest.raises(SourceBusy):
        execute_job(job.pk)
    job.refresh_from_db()
    assert job.status == ImportJob.Status.QUEUED
    with pytest.raises(SourceBusy):  # a queued job's row phase: its task retries later
        run_row_phase(job.pk)
    job.refresh_from_db()
    assert (job.status, job.rows_applied_at) == (ImportJob.Status.QUEUED, None)
    assert Car.objects.count() == 0

    with pytest.raises(CommandError) as excinfo:
        call_command("import_csv", str(source), "--no-progress")
    assert excinfo.value.returncode == 1
    assert "another import" in str(excinfo.value)
    assert ImportJob.objects.filter(status=ImportJob.Status.FAILED).count() == 1
    assert Car.objects.count() == 0
    assert_still_running(holder)

    release(holder.pk)
    call_command("import_csv", str(source), "--no-progress")
    assert Car.objects.count() == 1
    assert not SourceLock.objects.exists(), "the lock is released after the import"


def test_a_finished_job_run_again_is_left_alone(tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text("title\nA\n")
    job = create_job(source=str(source))
    assert execute_job(job.pk) is not None
    assert execute_job(job.pk) is None, "a redelivered task of a finished job does nothing"
    job.refresh_from_db()
    assert job.attempts == 1 and Car.objects.count() == 1

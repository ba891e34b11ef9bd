"""The sweep and the lock rules of queued jobs, one rule at a time, on the real database.

The process-level proofs (workers SIGKILLed at named moments, on both brokers) are in
tests/test_crashes.py; these pin the rules an adversarial review found missing: the sweep
leaves jobs run in one process alone, sends again a chunk whose message was lost, and a
queued job keeps its source while its chunks wait.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from imports import tasks
from imports.heartbeat import HOST, is_dead
from imports.lifecycle import SourceBusy, acquire, create_job, lock_key
from imports.models import ImageChunk, ImportJob, SourceLock
from imports.sweep import sweep

pytestmark = pytest.mark.django_db

SOURCE = "https://example.com/cars.csv"
LONG_AGO = timedelta(minutes=10)


@pytest.fixture
def sent(monkeypatch) -> dict[str, list]:
    """Every task the sweep sends, by name, instead of a broker."""
    calls: dict[str, list] = {"chunks": [], "jobs": []}
    monkeypatch.setattr(tasks.process_image_chunk, "delay", calls["chunks"].append)
    monkeypatch.setattr(tasks.run_import_job, "delay", calls["jobs"].append)
    return calls


def _running_job(*, queued: bool, worker: str, beat_ago: timedelta, rows_applied: bool):
    job = create_job(source=SOURCE)
    then = timezone.now() - beat_ago
    ImportJob.objects.filter(pk=job.pk).update(
        queued=queued,
        status=ImportJob.Status.RUNNING,
        worker=worker,
        heartbeat_at=then,
        rows_applied_at=then if rows_applied else None,
        chunks_pending=1 if rows_applied else 0,
    )
    SourceLock.objects.create(key=lock_key(SOURCE), job=job, worker=worker, heartbeat_at=then)
    job.refresh_from_db()
    return job


def test_a_job_run_in_one_process_is_never_handed_to_workers(sent):
    """`import_csv` with a broker configured: its job is the command's, not the sweep's."""
    _running_job(queued=False, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=False)

    assert sweep()["jobs"] == 0
    assert sent["jobs"] == []


def test_a_queued_row_phase_whose_worker_died_is_sent_again_once(sent):
    job = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=False)

    sweep()
    sweep()  # the first sweep noted when it sent it: not again before the timeout

    assert sent["jobs"] == [job.pk]
    job.refresh_from_db()
    assert (job.status, job.worker) == (ImportJob.Status.QUEUED, "")


def test_a_row_phase_that_committed_meanwhile_is_not_sent_again(sent):
    job = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=True)

    sweep()

    assert sent["jobs"] == []
    job.refresh_from_db()
    assert job.status == ImportJob.Status.RUNNING


def test_a_queued_chunk_whose_message_was_lost_is_sent_again(sent):
    job = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=True)
    chunk = ImageChunk.objects.create(job=job, index=0, items=[], heartbeat_at=job.heartbeat_at)

    sweep()
    sweep()

    assert sent["chunks"] == [chunk.pk], "sent again, once per timeout"


def test_queued_chunks_behind_a_backlog_are_left_to_the_broker(sent):
    """A chunk of the job ran recently (the lock's beat is fresh): the queue is only long."""
    job = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=True)
    ImageChunk.objects.create(job=job, index=0, items=[], heartbeat_at=job.heartbeat_at)
    SourceLock.objects.filter(job=job).update(heartbeat_at=timezone.now())

    sweep()

    assert sent["chunks"] == []


def test_a_running_chunk_of_a_dead_worker_is_queued_and_sent_again(sent):
    job = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=True)
    chunk = ImageChunk.objects.create(
        job=job,
        index=0,
        items=[],
        status=ImageChunk.Status.RUNNING,
        worker=f"{HOST}:999999999:ab12",  # a pid no process has, on this host
        heartbeat_at=timezone.now(),
    )

    sweep()

    assert sent["chunks"] == [chunk.pk]
    chunk.refresh_from_db()
    assert chunk.status == ImageChunk.Status.QUEUED


def test_a_queued_job_keeps_its_source_while_its_chunks_wait():
    """No beat for minutes (its chunks wait behind another import's), yet it is alive:
    the sweep will hand out whatever its workers leave. The next import waits."""
    holder = _running_job(queued=True, worker="elsewhere:1", beat_ago=LONG_AGO, rows_applied=True)

    with pytest.raises(SourceBusy):
        acquire(create_job(source=SOURCE))
    holder.refresh_from_db()
    assert holder.status == ImportJob.Status.RUNNING


def test_a_process_alive_on_this_host_is_alive_even_when_its_beat_is_late():
    """SQLite makes a beat wait while another transaction writes; the pid still answers."""
    import os

    late = timezone.now() - timedelta(minutes=5)
    assert not is_dead(f"{HOST}:{os.getpid()}", late)
    assert is_dead(f"{HOST}:999999999", timezone.now())
    assert is_dead("elsewhere:1", late)
    assert not is_dead("elsewhere:1", timezone.now())


def test_a_row_phase_that_meets_a_database_error_hands_its_job_back(monkeypatch, tmp_path):
    """A transient database error rolls the row phase back and the task retries: the job
    must be free to take again at once, not held by this (live) process for minutes."""
    from django.db import OperationalError

    import imports.runner
    from imports.runner import run_job as run_row_phase

    source = tmp_path / "cars.csv"
    source.write_text("id,title\n1,Alpha\n")
    job = create_job(source=str(source))
    ImportJob.objects.filter(pk=job.pk).update(queued=True)

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(imports.runner, "apply_source", database_gone)
    with pytest.raises(OperationalError):
        run_row_phase(job.pk)
    job.refresh_from_db()
    assert (job.status, job.worker) == (ImportJob.Status.QUEUED, "")

    monkeypatch.undo()
    run_row_phase(job.pk)  # the retry: taken at once, and done
    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED

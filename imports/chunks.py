"""Queued jobs: one row-phase task, then the image work in chunks that any worker takes.

- `run_row_phase(job_id)` applies the rows in one transaction that also records the
  job's chunks (at most CARS_IMAGE_CHUNK distinct references each); the chunk tasks are
  sent once it commits.
- `run_chunk(chunk_id)` fetches and renders its references, then writes their outcomes
  on the cars, marks itself done, stores its image failures with the job's (within
  CARS_JOB_MAX_PROBLEMS) and counts itself on the job in one transaction. The
  chunk that brings the job's pending count to 0 closes the job in that transaction: a
  conditional update, so exactly once, with no chord and no result backend.
- `sweep()` (Celery beat) hands out again what a dead process left: a row phase or a
  chunk whose heartbeat is older than CARS_IMPORT_HEARTBEAT_TIMEOUT, a job or chunks
  whose messages were never sent, and pictures no car shows.

Every task takes ids only and is idempotent: a redelivered message finds its work done,
or held by a live process, and returns.
"""

import logging
import secrets
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from cars.pictures.reasons import ImageReason
from cars.pictures.store import orphan_picture_ids, release_pictures

from .heartbeat import Heartbeat, is_dead, stale_before, worker_id
from .locks import ENDED, SourceBusy, acquire, beat, release
from .models import ImageChunk, ImportJob, ImportProblem, SourceLock
from .pictures.pipeline import (
    ImageFailure,
    ImageItem,
    ImagePipeline,
    ItemOutcome,
    Recorded,
    record_outcomes,
)
from .problems import add_image_failures, reason_counts, record_rejected_rows, stored_preview
from .queue import PROCESS_IMAGE_CHUNK, RUN_IMPORT_JOB, send
from .report import ImportReport
from .services import apply_source, csv_fetch_policy
from .sources import OpenedSource, SourceError, open_source
from .totals import add_job_to_totals
from .uploads import discard_upload

logger = logging.getLogger(__name__)

Status = ImportJob.Status
# A chunk whose process died this many times fails its images instead of killing more.
MAX_CHUNK_ATTEMPTS = 5


class ChunkTaken(Exception):
    """Another process finished or took over this chunk: what this one did is discarded."""


# --- The row phase ---------------------------------------------------------------------


def run_row_phase(job_id: int, *, opened: OpenedSource | None = None) -> None:
    """Apply the job's rows and queue its image chunks. Raises SourceBusy to be retried.

    `opened` is the source when the caller has read it already (the periodic sync).
    """
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None or job.status in ENDED or job.rows_applied_at is not None:
        return  # done already; chunks never sent are the sweep's
    if job.status == Status.RUNNING and not is_dead(job.worker, job.heartbeat_at):
        return  # a live process is on it; if it dies, the sweep sends this again
    try:
        acquire(job)
    except SourceBusy:
        ImportJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())  # not lost
        raise
    claimed = ImportJob.objects.filter(
        pk=job.pk, status=job.status, worker=job.worker, heartbeat_at=job.heartbeat_at
    ).update(
        status=Status.RUNNING,
        started_at=job.started_at or timezone.now(),
        attempts=F("attempts") + 1,
        worker=worker_id(),
        heartbeat_at=timezone.now(),
    )
    if not claimed:
        return  # another delivery of this task took it between our read and our update
    with Heartbeat(lambda: _beat_job(job.pk)):
        report = ImportReport(source=job.source)
        try:
            opened = opened or open_source(job.source, policy=csv_fetch_policy())
            apply_source(
                opened,
                report,
                prune=job.prune,
                refresh_images=job.refresh_images,
                columns=job.column_map,
                encoding=job.encoding or None,
                before_commit=lambda items: _record_chunks(job, report, items, opened.base_dir),
            )
        except SourceError as exc:
            _fail(job, str(exc))
            return
        except Exception as exc:
            if isinstance(exc, OperationalError | InterfaceError):
                # Rolled back: hand the job back, so the retried task (or the sweep) takes
                # it at once rather than waiting for this live process to look dead.
                ImportJob.objects.filter(pk=job.pk, worker=worker_id()).update(
                    status=Status.QUEUED, worker=""
                )
                raise
            logger.exception("import job %s crashed", job.pk)
            _fail(job, f"{type(exc).__name__}: {exc}")
            return
    _send_chunks(job.pk)
    logger.info("import job %s: rows applied; %s", job.pk, report.summary())


def _beat_job(job_id: int) -> None:
    ImportJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now(), worker=worker_id())
    beat(job_id)


def _record_chunks(job: ImportJob, report: ImportReport, items: list[ImageItem], base_dir):
    """Inside the row transaction: the job's chunks, its row counts, and its progress."""
    size = settings.CARS_IMAGE_CHUNK
    chunks = [
        ImageChunk(job=job, index=n, items=[item.to_json() for item in items[start : start + size]])
        for n, start in enumerate(range(0, len(items), size))
    ]
    ImageChunk.objects.bulk_create(chunks, batch_size=1000)
    ImportJob.objects.filter(pk=job.pk).update(
        rows_applied_at=timezone.now(),
        base_dir=str(base_dir or ""),
        counts=asdict(report.counts),
        warnings=list(report.warnings),
        feed=report.feed(),
        images_total=len(items),
        chunks_pending=len(chunks),
        **record_rejected_rows(job.pk, report),
    )
    if not chunks:
        _close(job.pk)


def _send_chunks(job_id: int) -> None:
    """Send the tasks of the job's chunks never sent, then note that they were."""
    unsent = ImageChunk.objects.filter(
        job_id=job_id, status=ImageChunk.Status.QUEUED, heartbeat_at__isnull=True
    )
    ids = list(unsent.values_list("pk", flat=True))
    for pk in ids:
        send(PROCESS_IMAGE_CHUNK, pk)
    ImageChunk.objects.filter(pk__in=ids, heartbeat_at__isnull=True).update(
        heartbeat_at=timezone.now()
    )


def _fail(job: ImportJob, error: str) -> None:
    with transaction.atomic():
        ImportJob.objects.filter(pk=job.pk).exclude(status__in=ENDED).update(
            status=Status.FAILED, finished_at=timezone.now(), error=error
        )
        release(job.pk)
    discard_upload(job.source)


# --- The chunks ------------------------------------------------------------------------


def run_chunk(chunk_id: int) -> None:
    """Do one chunk's image work, unless it is done or a live process holds it."""
    token = f"{worker_id()}:{secrets.token_hex(4)}"
    chunk = _claim(chunk_id, token)
    if chunk is None:
        return
    items = [ImageItem.from_json(value) for value in chunk.items]
    try:
        _run_claimed(chunk, token, items)
    except Exception:
        # Hand it back (a retried task claims it at once), unless another process has it.
        ImageChunk.objects.filter(
            pk=chunk.pk, status=ImageChunk.Status.RUNNING, worker=token
        ).update(status=ImageChunk.Status.QUEUED, worker="", heartbeat_at=timezone.now())
        raise


def _run_claimed(chunk: ImageChunk, token: str, items: list[ImageItem]) -> None:
    with Heartbeat(lambda: _beat_chunk(chunk, token)):
        if chunk.attempts > MAX_CHUNK_ATTEMPTS:
            failure = ImageFailure(
                ImageReason.INVALID_IMAGE,
                f"processing these images failed or stopped its worker {MAX_CHUNK_ATTEMPTS} times",
            )
            _record(chunk, token, [ItemOutcome(item, failure=failure) for item in items])
            return
        base_dir = Path(chunk.job.base_dir) if chunk.job.base_dir else None
        with ImagePipeline(base_dir=base_dir, workers=settings.CARS_IMPORT_WORKERS) as pipeline:
            _record(chunk, token, list(pipeline.run(items)), record=pipeline.record)


def _claim(chunk_id: int, token: str) -> ImageChunk | None:
    """The chunk, now held by `token`; None if done, gone, or held by a live process."""
    chunk = ImageChunk.objects.select_related("job").filter(pk=chunk_id).first()
    if chunk is None or chunk.status == ImageChunk.Status.DONE or chunk.job.status in ENDED:
        return None
    if chunk.status == ImageChunk.Status.RUNNING and not is_dead(chunk.worker, chunk.heartbeat_at):
        return None
    taken = ImageChunk.objects.filter(
        pk=chunk.pk, status=chunk.status, worker=chunk.worker, heartbeat_at=chunk.heartbeat_at
    ).update(
        status=ImageChunk.Status.RUNNING,
        worker=token,
        heartbeat_at=timezone.now(),
        attempts=F("attempts") + 1,
    )
    if not taken:
        return None  # another process claimed it between our read and our update
    chunk.refresh_from_db()
    return chunk


def _beat_chunk(chunk: ImageChunk, token: str) -> None:
    ImageChunk.objects.filter(pk=chunk.pk, worker=token).update(heartbeat_at=timezone.now())
    beat(chunk.job_id)


def _record(chunk: ImageChunk, token: str, outcomes: list[ItemOutcome], record=record_outcomes):
    try:
        record(outcomes, inside=lambda recorded: _finish_chunk(chunk, token, recorded))
    except ChunkTaken:
        logger.info("%s was finished by another process", chunk)


def _finish_chunk(chunk: ImageChunk, token: str, recorded: Recorded) -> None:
    """Inside the outcomes' transaction: the chunk is done, counted, its failures stored
    with the job's, maybe the job closed. A chunk done already rolls all of it back."""
    done = ImageChunk.objects.filter(
        pk=chunk.pk, status=ImageChunk.Status.RUNNING, worker=token
    ).update(
        status=ImageChunk.Status.DONE,
        images_ok=recorded.ok,
        images_failed=recorded.failed,
        pictures_new=recorded.pictures_new,
        pictures_shared=recorded.pictures_shared,
        failure_reasons=reason_counts(recorded.failures),
    )
    if not done:
        raise ChunkTaken
    ImportJob.objects.filter(pk=chunk.job_id).update(
        chunks_pending=F("chunks_pending") - 1, images_done=F("images_done") + len(chunk.items)
    )
    add_image_failures(chunk.job_id, recorded.failures)
    _close(chunk.job_id)


def _close(job_id: int) -> None:
    """Close the job if no chunk is pending: exactly once, by a conditional update."""
    closed = ImportJob.objects.filter(pk=job_id, status=Status.RUNNING, chunks_pending=0).update(
        status=Status.SUCCEEDED, finished_at=timezone.now()
    )
    if not closed:
        return
    job = ImportJob.objects.get(pk=job_id)
    chunks = ImageChunk.objects.filter(job_id=job_id)
    sums = chunks.aggregate(
        ok=Sum("images_ok"),
        failed=Sum("images_failed"),
        new=Sum("pictures_new"),
        shared=Sum("pictures_shared"),
    )
    reasons = Counter()
    for batch in chunks.values_list("failure_reasons", flat=True).iterator():
        reasons.update(batch)
    counts = {**job.counts, "images_ok": sums["ok"] or 0, "images_failed": sums["failed"] or 0}
    ImportJob.objects.filter(pk=job_id).update(
        counts=counts,
        image_failures=stored_preview(job_id, ImportProblem.Kind.IMAGE_FAILURE),
        image_failure_reasons=dict(reasons),
        pictures={"new": sums["new"] or 0, "shared": sums["shared"] or 0},
    )
    add_job_to_totals(job_id)
    chunks.delete()  # their outcomes are on the cars and the job now
    release(job_id)
    transaction.on_commit(lambda: discard_upload(job.source))  # not needed again
    logger.info("import job %s succeeded: %s", job_id, counts)


# --- The sweep -------------------------------------------------------------------------


def sweep() -> dict[str, int]:
    """Hand out again the work of dead processes and lost messages; delete orphan pictures.

    Only queued jobs: a job run in one process (`import_csv`) is that process's, and the
    next import of its source takes it over if the process died (imports.locks).
    """
    cutoff, now = stale_before(), timezone.now()
    found = {"chunks": 0, "jobs": 0, "pictures": 0}
    live = {"job__queued": True, "job__status": Status.RUNNING}
    running = ImageChunk.objects.filter(status=ImageChunk.Status.RUNNING, **live).values_list(
        "pk", "worker", "heartbeat_at"
    )
    for pk, worker, heartbeat_at in running:
        if is_dead(worker, heartbeat_at) and ImageChunk.objects.filter(
            pk=pk, worker=worker, heartbeat_at=heartbeat_at
        ).update(status=ImageChunk.Status.QUEUED, worker="", heartbeat_at=now):
            send(PROCESS_IMAGE_CHUNK, pk)
            found["chunks"] += 1
    # Chunks never sent (their row phase died between its commit and the sending), and
    # chunks whose message was lost: sent before the cutoff, of a job none of whose
    # chunks has run since (the lock's beat is stale), so a mere backlog is left alone.
    unsent = ImageChunk.objects.filter(
        status=ImageChunk.Status.QUEUED, heartbeat_at__isnull=True, job__rows_applied_at__lt=cutoff
    )
    for job_id in set(unsent.filter(**live).values_list("job_id", flat=True)):
        _send_chunks(job_id)
        found["chunks"] += 1
    idle_jobs = SourceLock.objects.filter(heartbeat_at__lt=cutoff).values("job_id")
    lost = ImageChunk.objects.filter(
        status=ImageChunk.Status.QUEUED, heartbeat_at__lt=cutoff, job_id__in=idle_jobs, **live
    ).values_list("pk", "heartbeat_at")
    for pk, heartbeat_at in lost:
        if ImageChunk.objects.filter(
            pk=pk, status=ImageChunk.Status.QUEUED, heartbeat_at=heartbeat_at
        ).update(heartbeat_at=now):
            send(PROCESS_IMAGE_CHUNK, pk)
            found["chunks"] += 1
    stalled = ImportJob.objects.filter(
        queued=True, status__in=(Status.QUEUED, Status.RUNNING), rows_applied_at__isnull=True
    ).values_list("pk", "status", "worker", "heartbeat_at")
    for pk, status, worker, heartbeat_at in stalled:
        # A running row phase beats; a queued job's beat is when its task was last sent.
        dead = (
            is_dead(worker, heartbeat_at)
            if status == Status.RUNNING
            else (heartbeat_at is None or heartbeat_at < cutoff)
        )
        if dead and ImportJob.objects.filter(
            pk=pk, status=status, heartbeat_at=heartbeat_at, rows_applied_at__isnull=True
        ).update(status=Status.QUEUED, worker="", heartbeat_at=now):
            send(RUN_IMPORT_JOB, pk)
            found["jobs"] += 1
    found["pictures"] = release_pictures(orphan_picture_ids())
    if any(found.values()):
        logger.info("import sweep handed out again: %s", found)
    return found

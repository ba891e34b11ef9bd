"""A job's life, written once for both executors: created, claimed, beating, failed or
finished, closed.

A job runs in one process (the command, and any job without a broker) or queued: its row
phase on one worker, its image work in chunks that any worker takes. imports.runner runs
both; they differ only in who calls the next step. This module is the only writer of a
job's status, progress and heartbeat, of its chunks' state and of its source's lock.
What it writes "in the caller's transaction" is written in the transaction that holds the
work it records (the rows, or a chunk's outcomes on the cars), which the runner opens: so
a SIGKILL at any moment loses and duplicates nothing.

One import per source at a time: a job holds its source's lock from its claim to its end,
beaten by whoever works for it. A job run in one process is taken over by the next import
of its source as soon as its process is dead (`heartbeat.is_dead`: gone from this host,
or no beat for CARS_IMPORT_HEARTBEAT_TIMEOUT), and marked failed. A queued job holds its
source until it ends: the sweep (imports.sweep) hands out again whatever its dead workers
left, so it always ends.
"""

import hashlib
import logging
from collections import Counter
from dataclasses import asdict

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from .heartbeat import is_dead, worker_id
from .models import ImageChunk, ImportJob, ImportProblem, SourceLock
from .pictures.pipeline import ImageItem, Recorded
from .problems import (
    add_image_failures,
    reason_counts,
    record_image_failures,
    record_rejected_rows,
    stored_preview,
)
from .report import ImportReport
from .totals import add_job_to_totals
from .uploads import discard_upload

logger = logging.getLogger(__name__)

Status = ImportJob.Status
ENDED = (Status.SUCCEEDED, Status.FAILED)


class SourceBusy(Exception):
    """Another import of the same source holds the lock."""


class ChunkTaken(Exception):
    """Another process finished or took over this chunk: what this one did is discarded."""


# --- A job -----------------------------------------------------------------------------


def create_job(
    *,
    source: str,
    prune: bool = False,
    refresh_images: bool = False,
    trigger: str = ImportJob.Trigger.COMMAND,
    user=None,
    column_map: dict[str, str] | None = None,
    encoding: str = "",
) -> ImportJob:
    return ImportJob.objects.create(
        source=source,
        prune=prune,
        refresh_images=refresh_images,
        column_map=column_map or {},
        encoding=encoding,
        trigger=trigger,
        created_by=user if user is not None and user.is_authenticated else None,
        heartbeat_at=timezone.now(),  # for a queued job: when its task was sent
    )


def mark_queued(job: ImportJob) -> None:
    """Its image work goes to workers in chunks (imports.dispatch decided so)."""
    ImportJob.objects.filter(pk=job.pk).update(queued=True)
    job.queued = True


def claim_job(job_id: int) -> ImportJob | None:
    """The job, now this process's for its row phase, with its source's lock.

    None if it is gone, ended, past its row phase, or held by a live process. Raises
    SourceBusy (the job stays queued) while another import holds the source.
    """
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is None or job.status in ENDED or job.rows_applied_at is not None:
        return None  # done already; chunks never sent are the sweep's
    if job.status == Status.RUNNING and not is_dead(job.worker, job.heartbeat_at):
        return None  # a live process is on it; if it dies, the sweep sends this again
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
    return job if claimed else None  # else another delivery took it since our read


def beat_job(job_id: int) -> None:
    """The row phase is alive (its heartbeat thread): the job's beat and its lock's."""
    ImportJob.objects.filter(pk=job_id).update(heartbeat_at=timezone.now(), worker=worker_id())
    beat(job_id)


def hand_back(job_id: int) -> None:
    """A row phase rolled back by a database error gives its job back, so the retried task
    (or the sweep) takes it at once rather than waiting for this live process to look dead."""
    ImportJob.objects.filter(pk=job_id, worker=worker_id()).update(status=Status.QUEUED, worker="")


def rows_applied(job: ImportJob, report: ImportReport, items: list[ImageItem], base_dir):
    """In the row transaction: the job's row counts, rejected rows and progress, and (a
    queued job) its chunks of image work; a queued job with no image work closes here."""
    chunks = []
    if job.queued:
        size = settings.CARS_IMAGE_CHUNK
        chunks = [
            ImageChunk(job=job, index=n, items=[i.to_json() for i in items[start : start + size]])
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
    if job.queued and not chunks:
        close_job(job.pk)


def images_done(job_id: int, items: int) -> None:
    """Progress of image work run here: `items` more distinct pictures recorded."""
    ImportJob.objects.filter(pk=job_id).update(images_done=F("images_done") + items)


def fail_job(job: ImportJob, error: str) -> None:
    """Record that `job` failed (unless it ended already), release its source, and drop its
    uploaded CSV. A database that is itself what failed is logged, not raised."""
    try:
        with transaction.atomic():
            ImportJob.objects.filter(pk=job.pk).exclude(status__in=ENDED).update(
                status=Status.FAILED, finished_at=timezone.now(), error=error
            )
            release(job.pk)
    except Exception:
        logger.exception("could not record the end of import job %s", job.pk)
    discard_upload(job.source)


def finish_job(job: ImportJob, status: str, *, report: ImportReport | None = None, error=""):
    """Record the end of a job run in one process: a failure's `error`, or a success's
    `report` (its image figures and failures) and then the job closed."""
    if status == Status.FAILED:
        fail_job(job, error)
        return
    try:
        with transaction.atomic():
            if report is not None:
                ImportJob.objects.filter(pk=job.pk).update(
                    counts=asdict(report.counts),
                    pictures=asdict(report.pictures),
                    warnings=list(report.warnings),
                    feed=report.feed(),
                    **record_image_failures(job.pk, report.image_failures),
                )
            _close(job.pk)
    except Exception:  # the database itself may be what failed
        logger.exception("could not record the end of import job %s", job.pk)
    discard_upload(job.source)  # the job has ended: its uploaded CSV is not needed again


def close_job(job_id: int) -> None:
    """In the caller's transaction: the job succeeded if it runs and no chunk is pending,
    exactly once (a conditional update); its totals are counted, its source released, and
    its uploaded CSV dropped once this commits."""
    job = _close(job_id)
    if job is not None:
        transaction.on_commit(lambda: discard_upload(job.source))  # not needed again


def _close(job_id: int) -> ImportJob | None:
    closed = ImportJob.objects.filter(pk=job_id, status=Status.RUNNING, chunks_pending=0).update(
        status=Status.SUCCEEDED, finished_at=timezone.now()
    )
    if not closed:
        return None
    job = ImportJob.objects.get(pk=job_id)
    if job.queued:
        logger.info("import job %s succeeded: %s", job_id, _sum_chunks(job))
    add_job_to_totals(job_id)
    release(job_id)
    return job


def _sum_chunks(job: ImportJob) -> dict:
    """A queued job's image figures, from its chunks, which then go; return its counts."""
    chunks = ImageChunk.objects.filter(job_id=job.pk)
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
    ImportJob.objects.filter(pk=job.pk).update(
        counts=counts,
        image_failures=stored_preview(job.pk, ImportProblem.Kind.IMAGE_FAILURE),
        image_failure_reasons=dict(reasons),
        pictures={"new": sums["new"] or 0, "shared": sums["shared"] or 0},
    )
    chunks.delete()  # their outcomes are on the cars and the job now
    return counts


def requeue_job(job_id: int, status: str, heartbeat_at) -> bool:
    """The sweep: a row phase whose process died, or whose message was lost, is queued
    again, unless anything moved since the sweep read it. Whether it was."""
    return bool(
        ImportJob.objects.filter(
            pk=job_id, status=status, heartbeat_at=heartbeat_at, rows_applied_at__isnull=True
        ).update(status=Status.QUEUED, worker="", heartbeat_at=timezone.now())
    )


# --- A chunk of a queued job's image work ------------------------------------------------


def claim_chunk(chunk_id: int, token: str) -> ImageChunk | None:
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


def beat_chunk(chunk: ImageChunk, token: str) -> None:
    ImageChunk.objects.filter(pk=chunk.pk, worker=token).update(heartbeat_at=timezone.now())
    beat(chunk.job_id)


def return_chunk(chunk: ImageChunk, token: str) -> None:
    """Hand a chunk back (a retried task claims it at once), unless another process has it."""
    ImageChunk.objects.filter(pk=chunk.pk, status=ImageChunk.Status.RUNNING, worker=token).update(
        status=ImageChunk.Status.QUEUED, worker="", heartbeat_at=timezone.now()
    )


def chunk_done(chunk: ImageChunk, token: str, recorded: Recorded) -> None:
    """In the transaction that wrote its outcomes on the cars: the chunk is done, counted,
    its failures stored with the job's, maybe the job closed. Raises ChunkTaken (for the
    caller to roll all of it back) when the chunk is no longer `token`'s."""
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
    close_job(chunk.job_id)


def chunks_sent(chunk_ids: list[int]) -> None:
    """The tasks of these chunks, never sent before, were sent now."""
    ImageChunk.objects.filter(pk__in=chunk_ids, heartbeat_at__isnull=True).update(
        heartbeat_at=timezone.now()
    )


def requeue_chunk(chunk_id: int, worker: str, heartbeat_at) -> bool:
    """The sweep: a chunk whose process died is queued again, unless it moved since the
    sweep read it. Whether it was."""
    return bool(
        ImageChunk.objects.filter(pk=chunk_id, worker=worker, heartbeat_at=heartbeat_at).update(
            status=ImageChunk.Status.QUEUED, worker="", heartbeat_at=timezone.now()
        )
    )


def resend_chunk(chunk_id: int, heartbeat_at) -> bool:
    """The sweep: a queued chunk whose message was lost is sent again, unless it moved
    since the sweep read it. Whether it is."""
    return bool(
        ImageChunk.objects.filter(
            pk=chunk_id, status=ImageChunk.Status.QUEUED, heartbeat_at=heartbeat_at
        ).update(heartbeat_at=timezone.now())
    )


# --- The source's lock -------------------------------------------------------------------


def lock_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def acquire(job: ImportJob) -> None:
    """Take the lock of `job.source` for `job` (again, if it holds it); else SourceBusy.

    A holder whose process is dead (and whose job runs in one process) is marked failed.
    """
    key, now = lock_key(job.source), timezone.now()
    try:
        with transaction.atomic():
            SourceLock.objects.create(key=key, job=job, worker=worker_id(), heartbeat_at=now)
        return
    except IntegrityError:
        pass
    with transaction.atomic():
        lock = SourceLock.objects.select_for_update().get(key=key)
        holder = ImportJob.objects.filter(pk=lock.job_id).first()
        if holder is not None and holder.pk != job.pk and holder.status not in ENDED:
            # A queued job outlives its processes: the sweep hands its work out again.
            if holder.queued or not is_dead(lock.worker, lock.heartbeat_at):
                raise SourceBusy(f"another import of {job.source} is running")
            ImportJob.objects.filter(pk=holder.pk).exclude(status__in=ENDED).update(
                status=Status.FAILED,
                finished_at=now,
                error=f"abandoned: its process ({lock.worker}) stopped, and import "
                f"#{job.pk} took the source over",
            )
        lock.job, lock.worker, lock.heartbeat_at = job, worker_id(), now
        lock.save()


def beat(job_id: int) -> None:
    """The lock's holder is alive."""
    SourceLock.objects.filter(job_id=job_id).update(heartbeat_at=timezone.now(), worker=worker_id())


def release(job_id: int) -> None:
    SourceLock.objects.filter(job_id=job_id).delete()

"""The sweep (Celery beat): what dead processes and lost messages left, handed out again.

A queued job's row phase or chunk whose heartbeat is older than
CARS_IMPORT_HEARTBEAT_TIMEOUT, a job or chunks whose messages were never sent, and
pictures no car shows. Each hand-out is a conditional update (imports.lifecycle) on what
the sweep read, so a process that wakes up meanwhile, or a second sweep, wins or loses
cleanly; the tasks sent find their work done, or held by a live process, and return.
"""

import logging

from cars.pictures.store import orphan_picture_ids, release_pictures

from .dispatch import PROCESS_IMAGE_CHUNK, RUN_IMPORT_JOB, send, send_chunks
from .heartbeat import is_dead, stale_before
from .lifecycle import requeue_chunk, requeue_job, resend_chunk
from .models import ImageChunk, ImportJob, SourceLock

logger = logging.getLogger(__name__)

Status = ImportJob.Status


def sweep() -> dict[str, int]:
    """Hand out again the work of dead processes and lost messages; delete orphan pictures.

    Only queued jobs: a job run in one process (`import_csv`) is that process's, and the
    next import of its source takes it over if the process died (imports.lifecycle).
    """
    cutoff = stale_before()
    found = {"chunks": 0, "jobs": 0, "pictures": 0}
    live = {"job__queued": True, "job__status": Status.RUNNING}
    running = ImageChunk.objects.filter(status=ImageChunk.Status.RUNNING, **live).values_list(
        "pk", "worker", "heartbeat_at"
    )
    for pk, worker, heartbeat_at in running:
        if is_dead(worker, heartbeat_at) and requeue_chunk(pk, worker, heartbeat_at):
            send(PROCESS_IMAGE_CHUNK, pk)
            found["chunks"] += 1
    # Chunks never sent (their row phase died between its commit and the sending), and
    # chunks whose message was lost: sent before the cutoff, of a job none of whose
    # chunks has run since (the lock's beat is stale), so a mere backlog is left alone.
    unsent = ImageChunk.objects.filter(
        status=ImageChunk.Status.QUEUED, heartbeat_at__isnull=True, job__rows_applied_at__lt=cutoff
    )
    for job_id in set(unsent.filter(**live).values_list("job_id", flat=True)):
        send_chunks(job_id)
        found["chunks"] += 1
    idle_jobs = SourceLock.objects.filter(heartbeat_at__lt=cutoff).values("job_id")
    lost = ImageChunk.objects.filter(
        status=ImageChunk.Status.QUEUED, heartbeat_at__lt=cutoff, job_id__in=idle_jobs, **live
    ).values_list("pk", "heartbeat_at")
    for pk, heartbeat_at in lost:
        if resend_chunk(pk, heartbeat_at):
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
        if dead and requeue_job(pk, status, heartbeat_at):
            send(RUN_IMPORT_JOB, pk)
            found["jobs"] += 1
    found["pictures"] = release_pictures(orphan_picture_ids())
    if any(found.values()):
        logger.info("import sweep handed out again: %s", found)
    return found

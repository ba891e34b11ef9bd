"""One import per source at a time: a database lock held by a job, kept alive by beats.

The process that runs the job's row phase, and then every chunk of its image work, beats
the lock. A job run in one process (`import_csv`, or any job without a broker) is taken
over by the next import of the same source as soon as its process is dead
(`heartbeat.is_dead`: gone from this host, or no beat for CARS_IMPORT_HEARTBEAT_TIMEOUT),
and is then marked failed. A queued job holds its source until it ends: the sweep hands
out again whatever its dead workers left, so it always ends.
"""

import hashlib

from django.db import IntegrityError, transaction
from django.utils import timezone

from .heartbeat import is_dead, worker_id
from .models import ImportJob, SourceLock

Status = ImportJob.Status
ENDED = (Status.SUCCEEDED, Status.FAILED)


class SourceBusy(Exception):
    """Another import of the same source holds the lock."""


def lock_key(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()


def acquire(job: ImportJob) -> None:
    """Take the lock of `job.source` for `job` (again, if it holds it); else SourceBusy."""
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
    SourceLock.objects.filter(job_id=job_id).update(heartbeat_at=timezone.now(), worker=worker_id())


def release(job_id: int) -> None:
    SourceLock.objects.filter(job_id=job_id).delete()

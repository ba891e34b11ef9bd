"""Import jobs, the writes (imports.selectors reads them): every import is recorded,
whoever starts it, and runs through here, in this process (`execute_job`: the command, and
any job without a broker) or on Celery workers (`submit_job` queues it once committed).
"""

import logging
from dataclasses import asdict

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from .heartbeat import Heartbeat, worker_id
from .locks import SourceBusy, acquire, beat, release
from .models import ImportJob
from .problems import record_report
from .queue import RUN_IMPORT_JOB, enqueue, queued
from .report import ImportReport
from .services import Progress, run_import
from .sources import OpenedSource, SourceError
from .totals import add_job_to_totals
from .uploads import discard_upload

logger = logging.getLogger(__name__)

Status = ImportJob.Status


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


def submit_job(job: ImportJob) -> None:
    """Run `job` now, or on Celery workers when a broker is configured."""
    if queued():
        ImportJob.objects.filter(pk=job.pk).update(queued=True)
        job.queued = True
        enqueue(RUN_IMPORT_JOB, job.pk)
        return
    try:
        execute_job(job.pk)
    except SourceBusy as exc:
        finish_job(job, Status.FAILED, error=str(exc))
    except SourceError:
        pass  # recorded on the job by execute_job


def execute_job(
    job_id: int,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    opened: OpenedSource | None = None,
) -> ImportReport | None:
    """Run a job to its end in this process, record the outcome on it, return its report.

    A finished job is left as it is (None is returned), and running an import again
    changes nothing the first run applied. Raises SourceBusy (job still queued) when
    another import holds the source, and SourceError (job failed) for fatal source errors.
    While it runs, this process beats the source's lock, so that if it dies the next
    import takes over at once on this host, or after CARS_IMPORT_HEARTBEAT_TIMEOUT.
    """
    job = ImportJob.objects.get(pk=job_id)
    if job.status in (Status.SUCCEEDED, Status.FAILED):
        return None
    acquire(job)
    try:
        ImportJob.objects.filter(pk=job.pk).update(
            status=Status.RUNNING,
            started_at=timezone.now(),
            attempts=F("attempts") + 1,
            worker=worker_id(),
        )

        def images_done(recorded, items_done: int) -> None:
            ImportJob.objects.filter(pk=job.pk).update(images_done=F("images_done") + items_done)

        def track(stage: str, done: int, total: int | None) -> None:
            if stage == "images" and done == 0 and total:
                ImportJob.objects.filter(pk=job.pk).update(images_total=total)
            if progress:
                progress(stage, done, total)

        try:
            with Heartbeat(lambda: beat(job.pk)):
                report = run_import(
                    source=job.source,
                    prune=job.prune,
                    refresh_images=job.refresh_images,
                    columns=job.column_map,
                    encoding=job.encoding or None,
                    workers=workers,
                    progress=track,
                    opened=opened,
                    on_images=images_done,
                )
        except SourceError as exc:
            finish_job(job, Status.FAILED, error=str(exc))
            raise
        except Exception as exc:
            logger.exception("import job %s crashed", job.pk)
            finish_job(job, Status.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        finish_job(job, Status.SUCCEEDED, report=report)
    finally:
        release(job.pk)
    logger.info(
        "import job %s succeeded: %s",
        job.pk,
        report.summary(),
        extra={"job_id": job.pk, "source": job.source, "counts": job.counts},
    )
    return report


def finish_job(job: ImportJob, status: str, *, report: ImportReport | None = None, error=""):
    """Record the end of `job` (a failure's `error`, a success's `report`)."""
    job.status = status
    job.finished_at = timezone.now()
    job.error = error
    fields = ["status", "finished_at", "error"]
    if report is not None:
        job.counts = asdict(report.counts)
        job.pictures = asdict(report.pictures)
        job.warnings = list(report.warnings)
        job.feed = report.feed()
        fields += ["counts", "pictures", "warnings", "feed"]
    try:
        with transaction.atomic():
            if report is not None:
                for name, value in record_report(job.pk, report).items():
                    setattr(job, name, value)
                    fields.append(name)
            job.save(update_fields=fields)
            if status == Status.SUCCEEDED:
                add_job_to_totals(job.pk)
    except Exception:  # the database itself may be what failed
        logger.exception("could not record the end of import job %s", job.pk)
    discard_upload(job.source)  # the job has ended: its uploaded CSV is not needed again

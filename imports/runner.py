"""Running an import job, for both executors: its row phase, then its image work.

- `run_job(job_id)` claims the job and applies its rows in one transaction that also
  records them on the job (and, queued, the job's chunks: at most CARS_IMAGE_CHUNK
  distinct references each). Then the next step: a job run here fetches its images here
  and finishes; a queued job's chunk tasks are sent once the rows have committed.
- `run_chunk(chunk_id)` fetches and renders its references, then writes their outcomes
  on the cars and marks itself done (counted on the job, its image failures stored with
  the job's within CARS_JOB_MAX_PROBLEMS) in one transaction. The chunk that brings the
  job's pending count to 0 closes the job in that transaction: a conditional update, so
  exactly once, with no chord and no result backend.

Each transaction is opened here, and imports.lifecycle writes the job's side of it. Every
task takes ids only and is idempotent: a redelivered message finds its work done, or held
by a live process, and returns. What a dead process left is the sweep's (imports.sweep).
"""

import logging
import secrets
import time
from dataclasses import asdict
from pathlib import Path

from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction

from cars.pictures.reasons import ImageReason

from .dispatch import send_chunks
from .heartbeat import Heartbeat, worker_id
from .lifecycle import (
    ChunkTaken,
    beat_chunk,
    beat_job,
    chunk_done,
    claim_chunk,
    claim_job,
    fail_job,
    finish_job,
    hand_back,
    images_done,
    return_chunk,
    rows_applied,
)
from .models import ImageChunk, ImportJob
from .pictures.pipeline import (
    ImageFailure,
    ImageItem,
    ImagePipeline,
    ItemOutcome,
    Recorded,
    record_outcomes,
)
from .report import ImportReport
from .services import Progress, apply_source, csv_fetch_policy, run_images, source_rows
from .sources import OpenedSource, SourceError, open_source

logger = logging.getLogger(__name__)

Status = ImportJob.Status
# A chunk whose process died this many times fails its images instead of killing more.
MAX_CHUNK_ATTEMPTS = 5


# --- A job -----------------------------------------------------------------------------


def run_job(
    job_id: int,
    *,
    opened: OpenedSource | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> ImportReport | None:
    """Run the job's row phase here, then its image work: here too, or (queued) as chunks
    sent to the workers. Return its report, None if there was nothing to do.

    A job ended, past its row phase or held by a live process is left alone, and running
    an import again changes nothing the first run applied. Raises SourceBusy (the job
    stays queued) while another import holds the source, and SourceError (the job failed)
    for fatal source errors. A queued job that meets a database error is handed back and
    the error raised: its task is retried. `opened` is the source when the caller has
    read it already (the periodic sync).
    """
    job = claim_job(job_id)
    if job is None:
        return None
    report = ImportReport(source=job.source)
    try:
        with Heartbeat(lambda: beat_job(job.pk)):
            _run(job, report, opened, workers, progress)
    except SourceError as exc:
        fail_job(job, str(exc))
        raise
    except Exception as exc:
        if job.queued and isinstance(exc, OperationalError | InterfaceError):
            # Rolled back: hand the job back, so the retried task (or the sweep) takes it
            # at once rather than waiting for this live process to look dead.
            hand_back(job.pk)
            raise
        logger.exception("import job %s crashed", job.pk)
        fail_job(job, f"{type(exc).__name__}: {exc}")
        raise
    if job.queued:
        send_chunks(job.pk)
        logger.info("import job %s: rows applied; %s", job.pk, report.summary())
    else:
        logger.info(
            "import job %s succeeded: %s",
            job.pk,
            report.summary(),
            extra={"job_id": job.pk, "source": job.source, "counts": asdict(report.counts)},
        )
    return report


def _run(job: ImportJob, report: ImportReport, opened, workers, progress) -> None:
    opened = opened or open_source(job.source, policy=csv_fetch_policy())
    started = time.monotonic()
    rows = source_rows(opened, report, columns=job.column_map, encoding=job.encoding or None)
    with rows as reader, transaction.atomic():
        items = apply_source(
            reader=reader,
            report=report,
            prune=job.prune,
            refresh_images=job.refresh_images,
            progress=progress,
        )
        rows_applied(job, report, items, opened.base_dir)
    if job.queued:
        return  # the next step is the workers': its chunks are sent once this returns
    run_images(
        items,
        report,
        base_dir=opened.base_dir,
        workers=workers,
        started=started,
        progress=progress,
        on_images=lambda recorded, done: images_done(job.pk, done),
    )
    finish_job(job, Status.SUCCEEDED, report=report)


# --- A chunk of a queued job's image work ------------------------------------------------


def run_chunk(chunk_id: int) -> None:
    """Do one chunk's image work, unless it is done or a live process holds it."""
    token = f"{worker_id()}:{secrets.token_hex(4)}"
    chunk = claim_chunk(chunk_id, token)
    if chunk is None:
        return
    items = [ImageItem.from_json(value) for value in chunk.items]
    try:
        _run_claimed(chunk, token, items)
    except Exception:
        return_chunk(chunk, token)  # a retried task claims it at once
        raise


def _run_claimed(chunk: ImageChunk, token: str, items: list[ImageItem]) -> None:
    with Heartbeat(lambda: beat_chunk(chunk, token)):
        if chunk.attempts > MAX_CHUNK_ATTEMPTS:
            failure = ImageFailure(
                ImageReason.INVALID_IMAGE,
                f"processing these images failed or stopped its worker {MAX_CHUNK_ATTEMPTS} times",
            )
            _record(chunk, token, [ItemOutcome(item, failure=failure) for item in items])
            return
        base_dir = Path(chunk.job.base_dir) if chunk.job.base_dir else None
        with ImagePipeline(base_dir=base_dir, workers=settings.CARS_IMPORT_WORKERS) as pipeline:
            _record(chunk, token, list(pipeline.run(items)), pipeline)


def _record(
    chunk: ImageChunk,
    token: str,
    outcomes: list[ItemOutcome],
    pipeline: ImagePipeline | None = None,
) -> None:
    def write(outcomes: list[ItemOutcome]) -> Recorded:
        """The outcomes on the cars and the chunk done, in one transaction; a chunk done
        by another process meanwhile rolls both back (ChunkTaken)."""
        with transaction.atomic():
            recorded = record_outcomes(outcomes)
            chunk_done(chunk, token, recorded)
        return recorded

    try:
        if pipeline is None:
            write(outcomes)
        else:
            pipeline.record(outcomes, write=write)
    except ChunkTaken:
        logger.info("%s was finished by another process", chunk)

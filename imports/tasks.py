"""Celery tasks: thin, JSON-safe (ids only), idempotent wrappers over the services, which
send them by name (imports.dispatch).

Every task acks late and is safe to run twice: a redelivered message (a worker killed,
a broker's visibility timeout, the sweep sending it again) finds its work done, or held
by a live process, and returns.
"""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from cars.pictures.store import rerender_picture

from . import sync
from .dispatch import PROCESS_IMAGE_CHUNK, RENDER_PICTURE, RETRY_IMAGES, RUN_IMPORT_JOB
from .lifecycle import SourceBusy
from .pictures.retry import retry_failed_images
from .runner import run_chunk, run_job
from .sources import SourceError
from .sweep import sweep

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)
SAFE = {"acks_late": True, "reject_on_worker_lost": True}


@shared_task(
    bind=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
    name=RUN_IMPORT_JOB,
    **SAFE,
)
def run_import_job(self, job_id: int) -> None:
    """A queued job's row phase: apply its rows, then send its image chunks."""
    try:
        run_job(job_id)
    except SourceBusy as exc:
        raise self.retry(exc=exc, countdown=30, max_retries=120) from None
    except SourceError:
        pass  # recorded on the job: the source cannot be imported, retrying changes nothing


@shared_task(
    autoretry_for=TRANSIENT, retry_backoff=2, max_retries=5, name=PROCESS_IMAGE_CHUNK, **SAFE
)
def process_image_chunk(chunk_id: int) -> None:
    """Fetch, store and render one chunk of a job's pictures; the last one closes the job."""
    run_chunk(chunk_id)


@shared_task(**SAFE)
def sweep_imports() -> None:
    """Periodic: hand out again the work of dead workers; delete pictures no car shows."""
    sweep()


@shared_task(autoretry_for=TRANSIENT, max_retries=5, name=RENDER_PICTURE, **SAFE)
def render_picture(picture_id: int) -> None:
    """(Re)make every platform's rendition of one picture from its stored original."""
    rerender_picture(picture_id)


@shared_task(**SAFE)
def sync_source() -> None:
    """Periodic: re-import CARS_CSV_SOURCE when it changed (one conditional request if not)."""
    sync.sync_source()


@shared_task(autoretry_for=TRANSIENT, max_retries=5, name=RETRY_IMAGES, **SAFE)
def retry_images(car_ids: list[int]) -> None:
    """Fetch again the images that failed for these cars (the admin's retry action)."""
    outcome = retry_failed_images(car_ids=car_ids)
    logger.info("image retry of %d cars: %s", len(car_ids), outcome.summary())

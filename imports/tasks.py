"""Celery tasks: thin, JSON-safe (ids only), idempotent wrappers over the services."""

import logging

from celery import shared_task
from django.db import InterfaceError, OperationalError

from .jobs import execute_job
from .locks import SourceBusy
from .retry import retry_failed_images
from .sources import SourceError

logger = logging.getLogger(__name__)

TRANSIENT = (OperationalError, InterfaceError)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=5,
)
def run_import_job(self, job_id: int) -> None:
    """Run one import job; redelivered or retried runs are safe (see execute_job)."""
    try:
        execute_job(job_id)
    except SourceBusy as exc:
        raise self.retry(exc=exc, countdown=30, max_retries=120) from None
    except SourceError:
        pass  # a fatal source error is the job's outcome, recorded on it; not a task error


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, max_retries=5)
def render_car(car_id: int) -> None:
    """(Re)make every platform's rendition of one car from its stored original."""
    from cars.renditions import rerender_car

    rerender_car(car_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def sync_source() -> None:
    """Periodic: re-import CARS_CSV_SOURCE when it changed (one conditional request if not)."""
    from .sync import sync_source as sync

    sync()


@shared_task(acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT, max_retries=5)
def retry_images(car_ids: list[int]) -> None:
    """Fetch again the images that failed for these cars (the admin's retry action)."""
    outcome = retry_failed_images(car_ids=car_ids)
    logger.info("image retry of %d cars: %s", len(car_ids), outcome.summary())

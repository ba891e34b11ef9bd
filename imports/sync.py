"""The periodic sync of CARS_CSV_SOURCE (Celery beat, every CARS_SYNC_INTERVAL seconds).

An unchanged source costs one conditional request (ETag / Last-Modified; a local file is
hashed) and no database write. A changed one is imported as a job (with a broker, its
rows here and its images on the workers); the validators are stored only once the rows
were applied, so a source that failed is read again by the next sync.
"""

import logging

from django.conf import settings

from .dispatch import assign
from .lifecycle import SourceBusy, create_job
from .models import ImportJob, SourceState
from .runner import run_job
from .services import csv_fetch_policy
from .sources import SourceError, open_source

logger = logging.getLogger(__name__)


def sync_source(source: str | None = None) -> ImportJob | None:
    """Import `source` (default CARS_CSV_SOURCE) if it changed; return the job, if any."""
    source = source or settings.CARS_CSV_SOURCE
    state = SourceState.objects.filter(source=source).first() or SourceState(source=source)
    try:
        opened = open_source(
            source, policy=csv_fetch_policy(), etag=state.etag, last_modified=state.last_modified
        )
    except SourceError as exc:
        logger.warning("sync of %s: cannot read the source: %s", source, exc)
        return None
    if opened.not_modified:
        logger.info("sync of %s: not modified", source)
        return None
    digest = opened.sha256()
    if state.pk and digest == state.sha256:
        opened.stream.close()
        logger.info("sync of %s: content unchanged", source)
        return None
    asked = _how_it_was_asked(source)
    job = create_job(source=source, prune=True, trigger=ImportJob.Trigger.SYNC, **asked)
    assign(job)  # the rows here; the images here too, or (with a broker) on the workers
    try:
        run_job(job.pk, opened=opened)
    except SourceBusy:
        logger.info("sync of %s: another import is running; next sync will retry", source)
        job.delete()
        return None
    except SourceError:
        job.refresh_from_db()
        return job
    job.refresh_from_db()
    if job.status == ImportJob.Status.FAILED:
        return job
    state.etag = opened.etag or ""
    state.last_modified = opened.last_modified or ""
    state.sha256 = digest
    state.save()
    return job


def _how_it_was_asked(source: str) -> dict:
    """A synced source keeps the `--map` and `--encoding` it was last imported with."""
    last = (
        ImportJob.objects.filter(source=source)
        .exclude(column_map={}, encoding="")
        .order_by("-created_at", "-id")
        .values("column_map", "encoding")
        .first()
    )
    return last or {}

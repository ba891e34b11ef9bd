"""Running an import: the one service the command, the Celery task and the API call.

source → parsed rows → applied in one transaction → images fetched → renditions.
A fatal source error raises SourceError before anything is committed.
"""

import logging
import time
from collections.abc import Callable
from contextlib import closing

from django.conf import settings
from django.db import transaction

from cars.catalog import bump_catalog_version
from cars.renditions import delete_files
from cars.search import deferred_search_index

from .csv_reader import CsvReader, CsvRow, CsvSourceError
from .fetching import FetchPolicy
from .pipeline import ImageOutcome, fetch_policy, run_image_jobs
from .report import ImageProblem, ImportReport, RowProblem
from .rows import RowApplier
from .sources import OpenedSource, SourceError, open_source

logger = logging.getLogger(__name__)

# progress(stage, done, total): stage is "rows" (total None) or "images".
Progress = Callable[[str, int, int | None], None]


def csv_fetch_policy() -> FetchPolicy:
    return fetch_policy(settings.CARS_CSV_MAX_BYTES)


def run_import(
    *,
    source: str | None = None,
    prune: bool = False,
    dry_run: bool = False,
    workers: int | None = None,
    refresh_images: bool = False,
    progress: Progress | None = None,
    opened: OpenedSource | None = None,
) -> ImportReport:
    """Import cars from `source` (default `CARS_CSV_SOURCE`) and fetch their images.

    With `dry_run` the rows are applied and rolled back (so the counts are exact) and the
    images are fetched and checked but not stored. `opened` is a source already opened
    by the caller (the periodic sync, which fetched it to see whether it changed).
    """
    source = source or settings.CARS_CSV_SOURCE
    workers = workers or settings.CARS_IMPORT_WORKERS
    report = ImportReport(source=source, dry_run=dry_run)
    opened = opened or open_source(source, policy=csv_fetch_policy())
    started = time.monotonic()
    with closing(opened.stream):
        try:
            applier = _apply_rows(opened.stream, report, prune, dry_run, refresh_images, progress)
        except CsvSourceError as exc:
            raise SourceError(str(exc)) from None
    if not dry_run:
        delete_files(applier.orphaned_files)
    rows_done = time.monotonic()
    fetch = _fetch_images(applier, opened.base_dir, report, workers, dry_run, progress)
    report.timings = {
        "rows": round(rows_done - started, 3),
        "images": round(time.monotonic() - rows_done, 3),
        "fetch": round(fetch, 3),
    }
    logger.info("import of %s: %s", source, report.summary())
    return report


def _apply_rows(stream, report, prune, dry_run, refresh_images, progress) -> RowApplier:
    reader = CsvReader(stream)
    if reader.unknown_columns:
        report.warnings.append("unknown columns ignored: " + ", ".join(reader.unknown_columns))
    applier = RowApplier(report.counts, refresh_images=refresh_images)
    with transaction.atomic():
        with deferred_search_index():
            for done, item in enumerate(reader, start=1):
                if isinstance(item, CsvRow):
                    applier.add(item)
                else:
                    report.rejected_rows.append(RowProblem(item.line, item.reason, item.message))
                    report.counts.rejected += 1
                if progress and done % 1000 == 0:
                    progress("rows", done, None)
            applier.flush()
            if prune:
                applier.prune(reader.key_seen)
        if applier.changed:
            bump_catalog_version()
        if dry_run:
            transaction.set_rollback(True)
    return applier


def _fetch_images(applier, base_dir, report, workers, dry_run, progress) -> float:
    total = len(applier.jobs)
    done = 0

    def record(outcome: ImageOutcome) -> None:
        nonlocal done
        done += 1
        if outcome.error:
            report.counts.images_failed += 1
            job, err = outcome.job, outcome.error
            report.image_failures.append(
                ImageProblem(job.line, job.key, job.ref, err.reason, err.message)
            )
        else:
            report.counts.images_ok += 1
        if progress:
            progress("images", done, total)

    fetch_seconds = run_image_jobs(
        applier.jobs, base_dir=base_dir, workers=workers, store=not dry_run, on_outcome=record
    )
    report.image_failures.sort(key=lambda f: f.line)
    return fetch_seconds

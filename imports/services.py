"""Running an import: the service the command, the Celery tasks and the API all go through.

source → parsed rows → applied in one transaction → images fetched → pictures stored and
rendered. A fatal source error raises SourceError before anything is committed.

`run_import` does all of it in the calling process, recording no job (dry runs). Jobs
(imports.runner) take the same steps: `source_rows` and `apply_source` in their own
transaction, then `run_images` here or, queued, in chunks on workers.
"""

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from django.conf import settings
from django.db import transaction

from cars.pictures.store import stored_sha256s

from .csv_reader import CsvReader, CsvSourceError
from .fetching import FetchPolicy
from .fewer_collections import fewer_collections
from .pictures.pipeline import (
    ImageItem,
    ImagePipeline,
    Recorded,
    fetch_policy,
    group_items,
    run_items,
)
from .report import ImageProblem, ImportReport
from .rows import apply_rows
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
    columns: dict[str, str] | None = None,
    encoding: str | None = None,
    fetch_images: bool = True,
) -> ImportReport:
    """Import cars from `source` (default `CARS_CSV_SOURCE`) and fetch their images, here,
    recording no job (imports.runner runs jobs with these same steps).

    With `dry_run` the rows are applied and rolled back (so the counts are exact) and the
    images are fetched and checked but not stored. `opened` is a source already opened
    by the caller. `columns` (`--map`) and `encoding` (`--encoding`) say what the feed
    does not; with `fetch_images` false (a dry run's `--no-images`) no picture is fetched.
    """
    source = source or settings.CARS_CSV_SOURCE
    report = ImportReport(source=source, dry_run=dry_run)
    opened = opened or open_source(source, policy=csv_fetch_policy())
    started = time.monotonic()
    rows = source_rows(opened, report, columns=columns, encoding=encoding)
    with rows as reader, transaction.atomic():
        items = apply_source(
            reader=reader,
            report=report,
            prune=prune,
            refresh_images=refresh_images,
            progress=progress,
        )
        if dry_run:
            transaction.set_rollback(True)
    run_images(
        items if fetch_images else [],
        report,
        base_dir=opened.base_dir,
        workers=workers,
        started=started,
        dry_run=dry_run,
        progress=progress,
    )
    logger.info("import of %s: %s", source, report.summary())
    return report


@contextmanager
def source_rows(
    opened: OpenedSource,
    report: ImportReport,
    *,
    columns: dict[str, str] | None = None,
    encoding: str | None = None,
) -> Iterator[CsvReader]:
    """The source's rows, as a reader, for a `with` block; its stream is closed after.

    A source that cannot be read as a cars CSV, at once or midway through the block,
    raises SourceError.
    """
    with closing(opened.stream):
        try:
            reader = CsvReader(
                opened.stream,
                encoding=encoding,
                columns=columns,
                max_pictures=settings.CARS_MAX_PICTURES_PER_CAR,
                max_attributes=settings.CARS_MAX_ATTRIBUTES,
            )
            report.encoding = reader.encoding
            report.mapping = reader.mapping.report()
            if "image" not in reader.mapping.fields:
                report.warnings.append(_NO_IMAGE_COLUMN.format(columns=_attribute_names(reader)))
            yield reader
        except CsvSourceError as exc:
            raise SourceError(str(exc)) from None


def apply_source(
    *,
    reader: CsvReader,
    report: ImportReport,
    prune: bool = False,
    refresh_images: bool = False,
    progress: Progress | None = None,
) -> list[ImageItem]:
    """Apply the source's rows in the caller's transaction; return the image work, one
    item per distinct reference, naming its cars."""
    with fewer_collections():
        refs = apply_rows(
            reader,
            report,
            refresh_images=refresh_images,
            prune=reader.key_seen if prune else None,
            progress=progress,
        )
        report.warnings += reader.warnings
        return group_items(refs)


_NO_IMAGE_COLUMN = (
    "no image column: no column is named for pictures, and none holds picture URLs "
    "(columns: {columns}); use --map image=COLUMN"
)


def _attribute_names(reader: CsvReader) -> str:
    names = ", ".join(name for name, _ in reader.mapping.attributes)
    return names if len(names) <= 200 else names[:197] + "..."


def run_images(
    items: list[ImageItem],
    report: ImportReport,
    *,
    base_dir: Path | None,
    workers: int | None,
    started: float,
    dry_run: bool = False,
    progress: Progress | None = None,
    on_images: Callable[[Recorded, int], None] | None = None,
) -> None:
    """The image phase, here: `items` fetched, checked, stored and rendered, their outcomes
    written on the cars in batches and counted in `report`, whose timings it sets (the
    rows' counted from `started`). `on_images(recorded, items_done)` follows each batch."""
    rows_done = time.monotonic()
    cpu_before = time.process_time()
    total = len(items)
    done = 0
    fetch = writes = 0.0

    def recorded(batch: Recorded, items_done: int) -> None:
        nonlocal done
        done += items_done
        if on_images:
            on_images(batch, items_done)
        if progress:
            progress("images", done, total)

    if items:
        if progress:
            progress("images", 0, total)
        workers = workers or settings.CARS_IMPORT_WORKERS
        pipeline = ImagePipeline(base_dir=base_dir, workers=workers, store=not dry_run)
        # The items' cars stay alive through the phase, as the rows did through theirs.
        with fewer_collections(), pipeline:
            if dry_run:
                outcome = _check_images(pipeline, items, recorded)
            else:
                outcome = run_items(pipeline, items, on_recorded=recorded)
        add_images(report, outcome)
        fetch = pipeline.window.seconds
        writes = pipeline.writing
    report.timings = {
        "rows": round(rows_done - started, 3),
        "images": round(time.monotonic() - rows_done, 3),
        "fetch": round(fetch, 3),
        "writes": round(writes, 3),
        # This process's CPU in the image phase: downloads, hashing, writes, transactions;
        # not the render processes' (a render pool of threads would count here too).
        "images_cpu": round(time.process_time() - cpu_before, 3),
    }


def _check_images(pipeline: ImagePipeline, items: list[ImageItem], recorded) -> Recorded:
    """A dry run's image phase: fetch and check, and tell new contents from stored ones."""
    outcome = Recorded()
    outcomes = []
    for result in pipeline.run(items):
        outcomes.append(result)
        recorded(Recorded(), 1)
    stored = stored_sha256s(o.sha256 for o in outcomes if not o.failure)
    seen: set[str] = set()
    for result in outcomes:
        for car in result.item.cars:
            if result.failure:
                outcome.failed += 1
                failure = result.failure
                outcome.failures.append(
                    ImageProblem(
                        car.line, car.key, result.item.ref, failure.reason, failure.message
                    )
                )
                continue
            outcome.ok += 1
            if result.sha256 in stored or result.sha256 in seen:
                outcome.pictures_shared += 1
            else:
                outcome.pictures_new += 1
                seen.add(result.sha256)
    return outcome


def add_images(report: ImportReport, outcome: Recorded) -> None:
    """Count image outcomes into the report (failures in CSV order)."""
    report.counts.images_ok += outcome.ok
    report.counts.images_failed += outcome.failed
    report.pictures.new += outcome.pictures_new
    report.pictures.shared += outcome.pictures_shared
    report.image_failures += outcome.failures
    report.image_failures.sort(key=lambda f: f.line)

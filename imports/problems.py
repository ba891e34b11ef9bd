"""Storing a job's rejected rows and image failures: capped, in batches, pageable.

`import_csv --report` lists every problem (SPEC §4); what a job stores is for the imports
API and the admin, which must stay small whatever the CSV. So a job stores at most
CARS_JOB_MAX_PROBLEMS of each kind as ImportProblem rows, and keeps the first
CARS_JOB_REPORT_PREVIEW of each kind on its own row, served with the job at no extra
query. Its counts hold the totals, so a problem over the cap is counted, never dropped in
silence; its image failures by reason (what /metrics counts) include every one.

Each function writes inside its caller's transaction (imports.lifecycle): a job's row
phase, the end of a job run in one process, or the transaction that marks an image chunk
done, so a redelivered chunk never stores its failures twice.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from operator import attrgetter

from django.conf import settings
from django.db.models import F

from .models import ImportJob, ImportProblem
from .report import ImageProblem, ImportReport, RowProblem

Kind = ImportProblem.Kind
BATCH = 2000  # rows per INSERT
FIELDS = {
    Kind.REJECTED_ROW: ("line", "reason", "message"),
    Kind.IMAGE_FAILURE: ("line", "key", "url", "reason", "message"),
}


def preview(problems: Sequence[RowProblem | ImageProblem]) -> list[dict]:
    """The first CARS_JOB_REPORT_PREVIEW problems (of those stored), as the job's list
    keeps them."""
    shown = min(settings.CARS_JOB_REPORT_PREVIEW, settings.CARS_JOB_MAX_PROBLEMS)
    return [asdict(p) for p in problems[:shown]]


def reason_counts(failures: Sequence[ImageProblem]) -> dict[str, int]:
    return dict(Counter(f.reason for f in failures))


def store(
    job_id: int, kind: int, problems: Sequence[RowProblem | ImageProblem], *, stored: int = 0
) -> int:
    """Store `problems` in order while the job has fewer than CARS_JOB_MAX_PROBLEMS of
    this kind (`stored` already); return how many were stored."""
    kept = problems[: max(0, settings.CARS_JOB_MAX_PROBLEMS - stored)]
    for start in range(0, len(kept), BATCH):  # one batch of rows in memory at a time
        ImportProblem.objects.bulk_create(
            ImportProblem(
                job_id=job_id,
                kind=kind,
                line=p.line,
                key=getattr(p, "key", ""),
                url=getattr(p, "url", ""),
                reason=p.reason,
                message=p.message,
            )
            for p in kept[start : start + BATCH]
        )
    return len(kept)


def record_image_failures(job_id: int, failures: Sequence[ImageProblem]) -> dict:
    """Store the image failures of a job run in one process (in CSV order); return the
    job's fields that describe them, for the caller to save."""
    return {
        "image_failures": preview(failures),
        "image_failures_stored": store(job_id, Kind.IMAGE_FAILURE, failures),
        "image_failure_reasons": reason_counts(failures),
    }


def record_rejected_rows(job_id: int, report: ImportReport) -> dict:
    """Store the rows the report rejected; return the job's fields that describe them."""
    return {
        "rejected_rows": preview(report.rejected_rows),
        "rejected_rows_stored": store(job_id, Kind.REJECTED_ROW, report.rejected_rows),
    }


def add_image_failures(job_id: int, failures: Sequence[ImageProblem]) -> int:
    """Store a chunk's image failures beside the job's others, within the cap; return how
    many were stored. Locks the job's row until the caller's transaction ends."""
    stored = (
        ImportJob.objects.select_for_update()
        .values_list("image_failures_stored", flat=True)
        .get(pk=job_id)
    )
    added = store(
        job_id, Kind.IMAGE_FAILURE, sorted(failures, key=attrgetter("line")), stored=stored
    )
    if added:
        ImportJob.objects.filter(pk=job_id).update(
            image_failures_stored=F("image_failures_stored") + added
        )
    return added


def stored_preview(job_id: int, kind: int) -> list[dict]:
    """The first CARS_JOB_REPORT_PREVIEW stored problems of a kind, in line order (a
    queued job's image failures, stored chunk by chunk in no particular order)."""
    rows = ImportProblem.objects.filter(job_id=job_id, kind=kind).order_by("line", "id")
    return list(rows.values(*FIELDS[kind])[: settings.CARS_JOB_REPORT_PREVIEW])

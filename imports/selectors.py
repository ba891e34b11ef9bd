"""Reading import jobs: what the imports API and the admin show of them."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

from django.conf import settings
from django.db.models import QuerySet

from .models import ImportJob, ImportProblem
from .report import Counts, ImportReport

Kind = ImportProblem.Kind

JOB_FIELDS = (
    "id",
    "source",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "counts",
    "rejected_rows",
    "image_failures",
    "error",
    "images_done",
    "images_total",
    "pictures",
    "rejected_rows_stored",
    "image_failures_stored",
    "column_map",
    "encoding",
    "feed",
)
PROBLEM_FIELDS = ("id", "kind", "line", "key", "url", "reason", "message")


def job_rows() -> QuerySet:
    """Jobs as dicts of JOB_FIELDS, newest first (the id breaks ties)."""
    return ImportJob.objects.values(*JOB_FIELDS).order_by("-created_at", "-id")


def job_detail(job_id: int) -> dict | None:
    return job_rows().filter(pk=job_id).first()


def counts_of(counts: dict | None) -> Counts:
    """A job's stored counts with every key present: zeros until the job has run."""
    known = {f.name for f in fields(Counts)}
    return Counts(**{name: value for name, value in (counts or {}).items() if name in known})


def job_summary(job: ImportJob) -> str:
    """The job's counts as the import summary line, or "" while it has none."""
    if not job.counts:
        return ""
    return ImportReport(source=job.source, counts=counts_of(job.counts)).summary()


SUMMARY_FIELDS = (
    "counts",
    "rejected_rows",
    "image_failures",
    "rejected_rows_stored",
    "image_failures_stored",
)


def problems_summary(job: dict | ImportJob) -> dict:
    """How many problems of each kind `job` (a job or a row of job_rows) stored and left
    out, the cap, and whether its lists (the first ones) show fewer than all."""
    if isinstance(job, ImportJob):
        job = {name: getattr(job, name) for name in SUMMARY_FIELDS}
    counts = counts_of(job["counts"])
    summary = {"max_stored": settings.CARS_JOB_MAX_PROBLEMS, "truncated": False}
    for name, total in (
        ("rejected_rows", counts.rejected),
        ("image_failures", counts.images_failed),
    ):
        stored = job[f"{name}_stored"]
        summary[name] = {"stored": stored, "not_stored": max(0, total - stored)}
        summary["truncated"] |= len(job[name]) < max(total, stored)
    return summary


def stored_problems(job_id: int, kinds: Sequence[int]) -> int | None:
    """How many problems of these kinds the job stored; None when there is no such job."""
    job = ImportJob.objects.filter(pk=job_id).values(
        "rejected_rows_stored", "image_failures_stored"
    )
    if not (row := job.first()):
        return None
    return sum(
        row["rejected_rows_stored" if kind == Kind.REJECTED_ROW else "image_failures_stored"]
        for kind in kinds
    )


@dataclass(frozen=True)
class ProblemPosition:
    """Where a page of problems starts: after this one, in (kind, line, id) order."""

    kind: int
    line: int
    id: int

    @classmethod
    def of(cls, problem: dict) -> "ProblemPosition":
        return cls(problem["kind"], problem["line"], problem["id"])


def problems_page(
    job_id: int, *, kinds: Sequence[int], after: ProblemPosition | None, limit: int
) -> list[dict]:
    """Up to `limit` stored problems of the job, of `kinds`, after `after`, in (kind, line,
    id) order, as dicts of PROBLEM_FIELDS.

    Each kind is a range of the (job, kind, line, id) index starting at the position's
    line, so a page deep in the list costs what the first one does.
    """
    page: list[dict] = []
    for kind in sorted(kinds):
        if after is not None and kind < after.kind:
            continue
        rows = ImportProblem.objects.filter(job_id=job_id, kind=kind)
        if after is not None and kind == after.kind:
            rows = rows.filter(line__gte=after.line).exclude(line=after.line, id__lte=after.id)
        page += rows.order_by("line", "id").values(*PROBLEM_FIELDS)[: limit - len(page)]
        if len(page) >= limit:
            break
    return page


def all_problems(job_id: int, kinds: Sequence[int], *, batch: int = 2000) -> Iterator[dict]:
    """Every stored problem of the job of `kinds`, in order, read `batch` at a time."""
    after = None
    while page := problems_page(job_id, kinds=kinds, after=after, limit=batch):
        yield from page
        after = ProblemPosition.of(page[-1])

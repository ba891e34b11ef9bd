"""Reading import jobs: what the imports API and the admin show of them."""

from dataclasses import fields

from django.db.models import QuerySet

from .models import ImportJob
from .report import Counts, ImportReport

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
)


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

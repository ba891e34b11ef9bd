"""Running totals of succeeded imports (for /metrics), added to once per job as it closes.

A succeeded job's figures never change, so they are added in the transaction that marks
it succeeded (imports.lifecycle.close_job: a job run here, or a queued job's last chunk),
exactly once, as the job closes exactly once. A scrape reads the totals and writes nothing.
"""

from django.db.models import F

from .models import ImportJob, ImportTotal

ROWS, FAILURES = "rows", "failures"


def add_job_to_totals(job_id: int) -> None:
    """Add a succeeded job's row counts and image failures by reason; in the caller's
    transaction, the one that closes the job."""
    counts, reasons = ImportJob.objects.values_list("counts", "image_failure_reasons").get(
        pk=job_id
    )
    _add(ROWS, {k: v for k, v in (counts or {}).items() if isinstance(v, int)})
    _add(FAILURES, reasons or {})


def totals() -> dict[str, dict[str, int]]:
    """{metric: {label: value}}, every metric present."""
    found: dict[str, dict[str, int]] = {ROWS: {}, FAILURES: {}}
    for metric, label, value in ImportTotal.objects.values_list("metric", "label", "value"):
        found.setdefault(metric, {})[label] = value
    return found


def _add(metric: str, values: dict[str, int]) -> None:
    for label, value in values.items():
        total, _ = ImportTotal.objects.get_or_create(metric=metric, label=label)
        ImportTotal.objects.filter(pk=total.pk).update(value=F("value") + value)

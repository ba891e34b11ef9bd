"""Move the problems that jobs (and done chunks of running jobs) hold in JSON lists into
ImportProblem rows, at most CARS_JOB_MAX_PROBLEMS of each kind per job as new jobs store
them; each job keeps the first CARS_JOB_REPORT_PREVIEW of each kind in its lists, and its
image failures by reason (what /metrics counts) before any is left out.

Backwards, a job's lists get back what was stored (not what the cap left out), and the
failures of chunks of jobs still running stay on the jobs' rows only."""

from collections import Counter

from django.conf import settings
from django.db import migrations

REJECTED_ROW, IMAGE_FAILURE = 1, 2  # ImportProblem.Kind
BATCH = 2000


def _problems(Problem, job_id: int, kind: int, entries: list) -> list:
    return [
        Problem(
            job_id=job_id,
            kind=kind,
            line=int(entry.get("line") or 0),
            key=str(entry.get("key") or ""),
            url=str(entry.get("url") or ""),
            reason=str(entry.get("reason") or ""),
            message=str(entry.get("message") or ""),
        )
        for entry in entries
    ]


def _by_line(entries) -> list:
    return sorted(entries or [], key=lambda entry: entry.get("line") or 0)


def forwards(apps, schema_editor):
    Job = apps.get_model("imports", "ImportJob")
    Chunk = apps.get_model("imports", "ImageChunk")
    Problem = apps.get_model("imports", "ImportProblem")
    cap, shown = settings.CARS_JOB_MAX_PROBLEMS, settings.CARS_JOB_REPORT_PREVIEW
    for job_id in Job.objects.order_by("pk").values_list("pk", flat=True):
        job = Job.objects.only("rejected_rows", "image_failures").get(pk=job_id)
        rows, failures = _by_line(job.rejected_rows), _by_line(job.image_failures)
        if not rows and not failures:
            continue
        stored = _problems(Problem, job_id, REJECTED_ROW, rows[:cap])
        stored += _problems(Problem, job_id, IMAGE_FAILURE, failures[:cap])
        Problem.objects.bulk_create(stored, batch_size=BATCH)
        Job.objects.filter(pk=job_id).update(
            rejected_rows=rows[:shown],
            image_failures=failures[:shown],
            rejected_rows_stored=min(len(rows), cap),
            image_failures_stored=min(len(failures), cap),
            image_failure_reasons=dict(Counter(f.get("reason", "") for f in failures)),
        )
    # A running queued job's done chunks: their failures join the job's (the job's lists
    # are filled when its last chunk closes it).
    for chunk_id in Chunk.objects.order_by("pk").values_list("pk", flat=True):
        chunk = Chunk.objects.only("job_id", "image_failures").get(pk=chunk_id)
        failures = _by_line(chunk.image_failures)
        if not failures:
            continue
        job_stored = Job.objects.values_list("image_failures_stored", flat=True).get(pk=chunk.job_id)
        kept = failures[: max(0, cap - job_stored)]
        Problem.objects.bulk_create(
            _problems(Problem, chunk.job_id, IMAGE_FAILURE, kept), batch_size=BATCH
        )
        Job.objects.filter(pk=chunk.job_id).update(image_failures_stored=job_stored + len(kept))
        Chunk.objects.filter(pk=chunk_id).update(
            failure_reasons=dict(Counter(f.get("reason", "") for f in failures))
        )


def backwards(apps, schema_editor):
    Job = apps.get_model("imports", "ImportJob")
    Problem = apps.get_model("imports", "ImportProblem")
    fields = {REJECTED_ROW: ("line", "reason", "message")}
    fields[IMAGE_FAILURE] = ("line", "key", "url", "reason", "message")
    job_ids = Problem.objects.order_by("job_id").values_list("job_id", flat=True).distinct()
    for job_id in list(job_ids):
        lists = {}
        for kind, names in fields.items():
            stored = Problem.objects.filter(job_id=job_id, kind=kind).order_by("line", "pk")
            lists[kind] = list(stored.values(*names))
        Job.objects.filter(pk=job_id).update(
            rejected_rows=lists[REJECTED_ROW], image_failures=lists[IMAGE_FAILURE]
        )


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0003_import_problems"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]

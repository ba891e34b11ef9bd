from django.conf import settings
from django.db import models
from django.utils import timezone


class ImportJob(models.Model):
    """One run of the importer, whoever started it (command, API, admin, periodic sync)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        COMMAND = "command"
        API = "api"
        ADMIN = "admin"
        SYNC = "sync"

    source = models.TextField()
    prune = models.BooleanField(default=False)
    refresh_images = models.BooleanField(default=False)
    # What the feed does not say for itself (SPEC §3): --map and --encoding.
    column_map = models.JSONField(
        default=dict, blank=True, help_text='`--map`: {"title": "Name", "image": "{a} {b}"}'
    )
    encoding = models.CharField(max_length=64, blank=True, default="")
    feed = models.JSONField(
        default=dict, blank=True, help_text='What the import read: {"encoding", "mapping"}.'
    )
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    trigger = models.CharField(max_length=16, choices=Trigger.choices, default=Trigger.COMMAND)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    counts = models.JSONField(default=dict, blank=True)
    # Its problems are ImportProblem rows, at most CARS_JOB_MAX_PROBLEMS of each kind (the
    # counts have the totals); the first few of each kind are also kept here, to be shown
    # with the job without a query.
    rejected_rows = models.JSONField(
        default=list, blank=True, help_text="The first CARS_JOB_REPORT_PREVIEW rejected rows."
    )
    image_failures = models.JSONField(
        default=list, blank=True, help_text="The first CARS_JOB_REPORT_PREVIEW image failures."
    )
    rejected_rows_stored = models.PositiveIntegerField(
        default=0, help_text="Rejected rows stored as ImportProblem rows."
    )
    image_failures_stored = models.PositiveIntegerField(
        default=0, help_text="Image failures stored as ImportProblem rows."
    )
    image_failure_reasons = models.JSONField(
        default=dict,
        blank=True,
        help_text='Every image failure by reason, stored or not: {"http_error": n}',
    )
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")
    # Queued jobs (Celery): the row phase is one task, the images are chunks of at most
    # CARS_IMAGE_CHUNK distinct references, taken by any worker. The job's progress and
    # outcome live here; the chunk that brings chunks_pending to 0 closes the job.
    queued = models.BooleanField(
        default=False, help_text="Run by Celery workers: a row-phase task, then image chunks."
    )
    rows_applied_at = models.DateTimeField(null=True, blank=True)
    base_dir = models.TextField(
        blank=True, default="", help_text="Folder that relative image paths resolve in."
    )
    images_total = models.PositiveIntegerField(default=0, help_text="Distinct pictures to fetch.")
    images_done = models.PositiveIntegerField(default=0)
    chunks_pending = models.PositiveIntegerField(default=0)
    pictures = models.JSONField(default=dict, blank=True, help_text='{"new": n, "shared": n}')
    # Who runs the row phase ("host:pid"), and when it last proved it is alive; for a
    # queued job, also when its task was last sent (a lost message is sent again).
    worker = models.CharField(max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import #{self.pk} of {self.source} ({self.status})"


class ImageChunk(models.Model):
    """A share of a queued job's image work: at most CARS_IMAGE_CHUNK distinct references.

    Its task is idempotent: a done chunk is left alone, and a chunk is marked done in the
    same transaction that writes its outcomes on the cars.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"

    job = models.ForeignKey(ImportJob, on_delete=models.CASCADE, related_name="chunks")
    index = models.PositiveIntegerField()
    items = models.JSONField(help_text="[[reference, [[car id, line, key], ...]], ...]")
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    worker = models.CharField(max_length=255, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    images_ok = models.PositiveIntegerField(default=0)
    images_failed = models.PositiveIntegerField(default=0)
    pictures_new = models.PositiveIntegerField(default=0)
    pictures_shared = models.PositiveIntegerField(default=0)
    # Its failures are stored as the job's ImportProblem rows when it is marked done.
    failure_reasons = models.JSONField(default=dict, blank=True, help_text='{"http_error": n}')

    class Meta:
        ordering = ["job", "index"]
        constraints = [models.UniqueConstraint(fields=["job", "index"], name="chunk_job_index")]

    def __str__(self) -> str:
        return f"chunk {self.index} of import #{self.job_id} ({self.status})"


class ImportProblem(models.Model):
    """A rejected row or an image failure of a job: an entry of the `--report` lists.

    A job stores at most CARS_JOB_MAX_PROBLEMS of each kind (imports.problems), and its
    counts say how many there were in all. They are read in (kind, line, id) order, a page
    at a time from a keyset, so the last page of 10,000 costs what the first one does.
    """

    class Kind(models.IntegerChoices):
        # The labels are the names the API and the CSV download use.
        REJECTED_ROW = 1, "rejected_row"
        IMAGE_FAILURE = 2, "image_failure"

    # No index of its own: the composite index below starts with the job.
    job = models.ForeignKey(
        ImportJob, on_delete=models.CASCADE, related_name="problems", db_index=False
    )
    kind = models.PositiveSmallIntegerField(choices=Kind.choices)
    line = models.PositiveIntegerField(help_text="CSV line the record starts on (header: 1)")
    key = models.TextField(blank=True, default="", help_text="The car's key (image failures).")
    url = models.TextField(blank=True, default="", help_text="The image (image failures).")
    reason = models.CharField(max_length=32)
    message = models.TextField()

    class Meta:
        ordering = ["job", "kind", "line", "id"]
        indexes = [models.Index(fields=["job", "kind", "line", "id"], name="import_problem_page")]

    def __str__(self) -> str:
        return f"line {self.line}: {self.get_kind_display()} ({self.reason})"


class SourceLock(models.Model):
    """One import per source at a time: the job that holds the source, and its heartbeat.

    Kept in the database so it works across processes and machines, with or without a
    broker. Whoever works for the job beats; a lock whose beat is older than
    CARS_IMPORT_HEARTBEAT_TIMEOUT, or whose holder is a process gone from this host, or
    whose job has ended, is taken over by the next import.
    """

    key = models.CharField(max_length=64, primary_key=True)
    job = models.ForeignKey(ImportJob, null=True, on_delete=models.SET_NULL, related_name="+")
    worker = models.CharField(max_length=255, blank=True, default="")  # "host:pid"
    heartbeat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lock {self.key} held by {self.worker}, alive at {self.heartbeat_at}"


class SourceState(models.Model):
    """What the periodic sync last saw of a source, for conditional requests."""

    source = models.TextField(unique=True)
    etag = models.CharField(max_length=255, blank=True, default="")
    last_modified = models.CharField(max_length=64, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.source


class ImportTotal(models.Model):
    """One running total of succeeded imports, for /metrics: rows by outcome (`rows`) or
    image failures by reason (`failures`). A job adds its figures once, in the transaction
    that closes it (imports.totals), so a scrape only reads a few small rows."""

    metric = models.CharField(max_length=16)
    label = models.CharField(max_length=64)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "label"], name="imports_total_metric_label")
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.label}}} {self.value}"

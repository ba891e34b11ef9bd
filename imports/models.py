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
    rejected_rows = models.JSONField(default=list, blank=True)
    image_failures = models.JSONField(default=list, blank=True)
    warnings = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"import #{self.pk} of {self.source} ({self.status})"


class SourceLock(models.Model):
    """A lock with a time-to-live per import source, so two imports never overlap.

    Kept in the database so it works across processes with or without Redis; an expired
    lock (its holder died) is taken over by the next import.
    """

    key = models.CharField(max_length=64, primary_key=True)
    token = models.CharField(max_length=32)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"lock {self.key} until {self.expires_at}"


class SourceState(models.Model):
    """What the periodic sync last saw of a source, for conditional requests."""

    source = models.TextField(unique=True)
    etag = models.CharField(max_length=255, blank=True, default="")
    last_modified = models.CharField(max_length=64, blank=True, default="")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return self.source

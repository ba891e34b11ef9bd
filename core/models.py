"""Running totals of finished imports, so a /metrics scrape reads a few small rows.

A succeeded job's figures never change, so each is added here once (core.metrics) and
never read again: a scrape costs the same with 3 jobs or 3,000, and with 200,000 image
failures recorded on each.
"""

from django.db import models


class CountedJob(models.Model):
    """A succeeded import job whose figures are already in ImportTotal (by id: no foreign
    key, so the totals outlive a deleted job as counters should)."""

    job_id = models.BigIntegerField(primary_key=True)

    def __str__(self) -> str:
        return f"job #{self.job_id} counted"


class ImportTotal(models.Model):
    """One counter: rows by outcome (`rows`), or image failures by reason (`failures`)."""

    metric = models.CharField(max_length=16)
    label = models.CharField(max_length=64)
    value = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["metric", "label"], name="import_total_metric_label")
        ]

    def __str__(self) -> str:
        return f"{self.metric}{{{self.label}}} {self.value}"

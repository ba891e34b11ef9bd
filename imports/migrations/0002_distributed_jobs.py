"""Queued imports in chunks with heartbeats (SPEC §4): job progress, chunks, and a source
lock held by a job and kept alive by beats instead of a time-to-live."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0001_initial"),
    ]

    operations = [
        migrations.AddField(model_name="importjob", name="queued", field=models.BooleanField(default=False, help_text="Run by Celery workers: a row-phase task, then image chunks.")),
        migrations.AddField(model_name="importjob", name="rows_applied_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(model_name="importjob", name="base_dir", field=models.TextField(blank=True, default="", help_text="Folder that relative image paths resolve in.")),
        migrations.AddField(model_name="importjob", name="images_total", field=models.PositiveIntegerField(default=0, help_text="Distinct pictures to fetch.")),
        migrations.AddField(model_name="importjob", name="images_done", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="importjob", name="chunks_pending", field=models.PositiveIntegerField(default=0)),
        migrations.AddField(model_name="importjob", name="pictures", field=models.JSONField(blank=True, default=dict, help_text='{"new": n, "shared": n}')),
        migrations.AddField(model_name="importjob", name="worker", field=models.CharField(blank=True, default="", max_length=255)),
        migrations.AddField(model_name="importjob", name="heartbeat_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.CreateModel(
            name="ImageChunk",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("index", models.PositiveIntegerField()),
                ("items", models.JSONField(help_text="[[reference, [[car id, line, key], ...]], ...]")),
                ("status", models.CharField(choices=[("queued", "Queued"), ("running", "Running"), ("done", "Done")], db_index=True, default="queued", max_length=16)),
                ("worker", models.CharField(blank=True, default="", max_length=255)),
                ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                ("attempts", models.PositiveSmallIntegerField(default=0)),
                ("images_ok", models.PositiveIntegerField(default=0)),
                ("images_failed", models.PositiveIntegerField(default=0)),
                ("pictures_new", models.PositiveIntegerField(default=0)),
                ("pictures_shared", models.PositiveIntegerField(default=0)),
                ("image_failures", models.JSONField(blank=True, default=list)),
                ("job", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name="chunks", to="imports.importjob")),
            ],
            options={
                "ordering": ["job", "index"],
                "constraints": [models.UniqueConstraint(fields=("job", "index"), name="chunk_job_index")],
            },
        ),
        # A lock of the old kind (a token and a time-to-live) means nothing to the new code.
        migrations.RunSQL("DELETE FROM imports_sourcelock", migrations.RunSQL.noop),
        migrations.RemoveField(model_name="sourcelock", name="token"),
        migrations.RemoveField(model_name="sourcelock", name="expires_at"),
        migrations.AddField(model_name="sourcelock", name="job", field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to="imports.importjob")),
        migrations.AddField(model_name="sourcelock", name="worker", field=models.CharField(blank=True, default="", max_length=255)),
        migrations.AddField(model_name="sourcelock", name="heartbeat_at", field=models.DateTimeField(default=django.utils.timezone.now), preserve_default=False),
    ]

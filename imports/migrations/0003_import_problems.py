"""A job's rejected rows and image failures as rows of their own (issue #22): paged by
keyset instead of served whole from a JSON list, and capped per job. The JSON lists stay,
holding the first few of each kind; 0004 moves what they held."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0002_distributed_jobs"),
    ]

    operations = [
        migrations.AddField(
            model_name="imagechunk",
            name="failure_reasons",
            field=models.JSONField(blank=True, default=dict, help_text='{"http_error": n}'),
        ),
        migrations.AddField(
            model_name="importjob",
            name="image_failure_reasons",
            field=models.JSONField(blank=True, default=dict, help_text='Every image failure by reason, stored or not: {"http_error": n}'),
        ),
        migrations.AddField(
            model_name="importjob",
            name="image_failures_stored",
            field=models.PositiveIntegerField(default=0, help_text="Image failures stored as ImportProblem rows."),
        ),
        migrations.AddField(
            model_name="importjob",
            name="rejected_rows_stored",
            field=models.PositiveIntegerField(default=0, help_text="Rejected rows stored as ImportProblem rows."),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="image_failures",
            field=models.JSONField(blank=True, default=list, help_text="The first CARS_JOB_REPORT_PREVIEW image failures."),
        ),
        migrations.AlterField(
            model_name="importjob",
            name="rejected_rows",
            field=models.JSONField(blank=True, default=list, help_text="The first CARS_JOB_REPORT_PREVIEW rejected rows."),
        ),
        migrations.CreateModel(
            name="ImportProblem",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.PositiveSmallIntegerField(choices=[(1, "rejected_row"), (2, "image_failure")])),
                ("line", models.PositiveIntegerField(help_text="CSV line the record starts on (header: 1)")),
                ("key", models.TextField(blank=True, default="", help_text="The car's key (image failures).")),
                ("url", models.TextField(blank=True, default="", help_text="The image (image failures).")),
                ("reason", models.CharField(max_length=32)),
                ("message", models.TextField()),
                ("job", models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name="problems", to="imports.importjob")),
            ],
            options={
                "ordering": ["job", "kind", "line", "id"],
                "indexes": [models.Index(fields=["job", "kind", "line", "id"], name="import_problem_page")],
            },
        ),
    ]

"""The running totals of succeeded imports move from core to imports (issue #23): a job
adds to them as it closes, so a /metrics scrape writes nothing. The totals carry over,
and the succeeded jobs that no scrape had counted yet are counted here, once."""

from collections import Counter

from django.db import migrations, models


def carry_over(apps, schema_editor):
    ImportTotal = apps.get_model("imports", "ImportTotal")
    ImportJob = apps.get_model("imports", "ImportJob")
    OldTotal = apps.get_model("core", "ImportTotal")
    CountedJob = apps.get_model("core", "CountedJob")
    totals = Counter()
    for metric, label, value in OldTotal.objects.values_list("metric", "label", "value"):
        totals[(metric, label)] += value
    counted = set(CountedJob.objects.values_list("job_id", flat=True))
    succeeded = ImportJob.objects.filter(status="succeeded").values_list(
        "pk", "counts", "image_failure_reasons"
    )
    for pk, counts, reasons in succeeded.iterator():
        if pk in counted:
            continue
        for label, value in (counts or {}).items():
            if isinstance(value, int):
                totals[("rows", label)] += value
        for label, value in (reasons or {}).items():
            totals[("failures", label)] += value
    ImportTotal.objects.bulk_create(
        ImportTotal(metric=metric, label=label, value=value)
        for (metric, label), value in totals.items()
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("imports", "0006_feed_options"),
    ]

    operations = [
        migrations.CreateModel(
            name="ImportTotal",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("metric", models.CharField(max_length=16)),
                ("label", models.CharField(max_length=64)),
                ("value", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("metric", "label"), name="imports_total_metric_label"
                    )
                ],
            },
        ),
        migrations.RunPython(carry_over, migrations.RunPython.noop),
    ]

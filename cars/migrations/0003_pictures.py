"""Pictures by content: one Picture per distinct original, cars point at it.

The per-car columns `image` and `renditions` stay, renamed `legacy_*` (a column rename:
no table rebuild on SQLite, so the FTS triggers of 0002 survive), so a deployment keeps
serving its existing files until `manage.py migrate_pictures` has moved them.
"""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cars", "0002_search"),
    ]

    operations = [
        migrations.CreateModel(
            name="Picture",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("sha256", models.CharField(max_length=64, unique=True)),
                ("image", models.ImageField(max_length=255, upload_to="images/")),
                ("width", models.PositiveIntegerField()),
                ("height", models.PositiveIntegerField()),
                ("renditions", models.JSONField(blank=True, default=dict, help_text="Per platform: stored name, width and height, so reads need no storage call.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now, editable=False)),
            ],
        ),
        migrations.RenameField(model_name="car", old_name="image", new_name="legacy_image"),
        migrations.RenameField(model_name="car", old_name="renditions", new_name="legacy_renditions"),
        migrations.AddField(
            model_name="car",
            name="picture",
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name="cars", to="cars.picture"),
        ),
    ]

"""A chunk's image failures go straight to the job's ImportProblem rows (0004 moved those
of the chunks done before): the chunk keeps only their count by reason."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0004_move_problems"),
    ]

    operations = [
        migrations.RemoveField(model_name="imagechunk", name="image_failures"),
    ]

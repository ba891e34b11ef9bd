"""Several pictures per car: a car's pictures after its first, one row each.

Only a new table: `cars_car` is not rebuilt (on SQLite a rebuild drops the FTS triggers
of 0002), and a car's first picture stays in its own columns, so nothing moves.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cars', '0005_feed_columns'),
    ]

    operations = [
        migrations.CreateModel(
            name='CarPicture',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveIntegerField(help_text="1, 2, ...: the car's own picture is 0.")),
                ('source_url', models.TextField(help_text='The picture reference as written in the feed.')),
                ('fetched_from', models.TextField(blank=True, default='', help_text='The reference the stored picture was fetched from.')),
                ('status', models.CharField(choices=[('none', 'No image'), ('pending', 'Pending'), ('ready', 'Ready'), ('failed', 'Failed')], default='pending', max_length=16)),
                ('error', models.CharField(blank=True, max_length=32, null=True)),
                ('error_message', models.TextField(blank=True, default='')),
                ('car', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='more_pictures', to='cars.car')),
                ('picture', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='car_pictures', to='cars.picture')),
            ],
            options={
                'ordering': ['car', 'position'],
                'constraints': [models.UniqueConstraint(fields=('car', 'position'), name='car_picture_position')],
            },
        ),
    ]

"""A car's further pictures lose the index on `car` alone: the unique (car, position)
index serves every lookup by car (its first column), and keeping both cost every insert.

Only `cars_carpicture` is rebuilt on SQLite (`cars_car` and its FTS triggers stay).
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cars', '0006_car_pictures'),
    ]

    operations = [
        migrations.AlterField(
            model_name='carpicture',
            name='car',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='more_pictures', to='cars.car'),
        ),
    ]

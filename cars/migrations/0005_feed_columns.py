"""What a car keeps of a feed (SPEC §3): its other columns as `attributes`, and a
sanitised copy of a description written in HTML.

Adding a NOT NULL column makes Django rebuild `cars_car` on SQLite, which drops the FTS
triggers of 0002: they are created again here (and the index rebuilt), as
`test_search_index_survives_migrations` checks.
"""

from django.db import migrations, models

# 0002's triggers, as they were written there.
SQLITE_TRIGGERS = [
    """CREATE TRIGGER IF NOT EXISTS cars_car_fts_ai AFTER INSERT ON cars_car BEGIN
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END""",
    """CREATE TRIGGER IF NOT EXISTS cars_car_fts_ad AFTER DELETE ON cars_car BEGIN
        INSERT INTO cars_car_fts(cars_car_fts, rowid, title, description)
        VALUES ('delete', old.id, old.title, old.description);
    END""",
    """CREATE TRIGGER IF NOT EXISTS cars_car_fts_au AFTER UPDATE OF title, description
    ON cars_car BEGIN
        INSERT INTO cars_car_fts(cars_car_fts, rowid, title, description)
        VALUES ('delete', old.id, old.title, old.description);
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END""",
]


def _restore_sqlite_search(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for sql in SQLITE_TRIGGERS:
        schema_editor.execute(sql)
    schema_editor.execute("INSERT INTO cars_car_fts(cars_car_fts) VALUES ('rebuild')")


class Migration(migrations.Migration):
    dependencies = [("cars", "0004_search_vocabulary")]

    operations = [
        migrations.AddField(
            model_name="car",
            name="attributes",
            field=models.JSONField(
                blank=True, default=dict, help_text="The feed's other columns: name -> value."
            ),
        ),
        migrations.AddField(
            model_name="car",
            name="description_html",
            field=models.TextField(
                blank=True,
                default="",
                help_text="Sanitised, when the feed wrote the description in HTML.",
            ),
        ),
        migrations.RunPython(_restore_sqlite_search, migrations.RunPython.noop),
    ]

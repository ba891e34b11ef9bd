"""Full-text search indexes, per database engine (see cars/search.py).

SQLite: an external-content FTS5 table kept in sync by triggers. Beware: a later
migration that makes Django rebuild `cars_car` on SQLite drops these triggers; the test
`test_search_index_survives_migrations` fails if that happens.
PostgreSQL: a stored generated tsvector column (title weighted above description) with a
GIN index.
"""

from django.db import migrations

SQLITE_FORWARD = [
    """CREATE VIRTUAL TABLE cars_car_fts USING fts5(
        title, description, content='cars_car', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER cars_car_fts_ai AFTER INSERT ON cars_car BEGIN
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END""",
    """CREATE TRIGGER cars_car_fts_ad AFTER DELETE ON cars_car BEGIN
        INSERT INTO cars_car_fts(cars_car_fts, rowid, title, description)
        VALUES ('delete', old.id, old.title, old.description);
    END""",
    """CREATE TRIGGER cars_car_fts_au AFTER UPDATE OF title, description ON cars_car BEGIN
        INSERT INTO cars_car_fts(cars_car_fts, rowid, title, description)
        VALUES ('delete', old.id, old.title, old.description);
        INSERT INTO cars_car_fts(rowid, title, description)
        VALUES (new.id, new.title, new.description);
    END""",
    "INSERT INTO cars_car_fts(cars_car_fts) VALUES ('rebuild')",
]
SQLITE_BACKWARD = [
    "DROP TRIGGER IF EXISTS cars_car_fts_au",
    "DROP TRIGGER IF EXISTS cars_car_fts_ad",
    "DROP TRIGGER IF EXISTS cars_car_fts_ai",
    "DROP TABLE IF EXISTS cars_car_fts",
]
POSTGRES_FORWARD = [
    """ALTER TABLE cars_car ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('english', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('english', coalesce(description, '')), 'B')
    ) STORED""",
    "CREATE INDEX cars_car_search_gin ON cars_car USING GIN (search_vector)",
]
POSTGRES_BACKWARD = [
    "DROP INDEX IF EXISTS cars_car_search_gin",
    "ALTER TABLE cars_car DROP COLUMN IF EXISTS search_vector",
]


def _run(statements: dict[str, list[str]]):
    def run(apps, schema_editor):
        for sql in statements.get(schema_editor.connection.vendor, []):
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("cars", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE_FORWARD, "postgresql": POSTGRES_FORWARD}),
            _run({"sqlite": SQLITE_BACKWARD, "postgresql": POSTGRES_BACKWARD}),
        )
    ]

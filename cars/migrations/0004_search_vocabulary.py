"""Search that forgives typos (see cars/search.py).

- `cars_searchword`: the catalogue's words, which a word that finds nothing is corrected
  against. Filled here for the cars already imported; imports keep it in step.
- PostgreSQL: the tsvector now folds accents like SQLite's FTS5 (`remove_diacritics 2`)
  already does, so `citroen` finds "Citroën" on both. `unaccent` is a trusted extension
  (PostgreSQL 13+): the database owner may create it without being a superuser. A
  generated column's expression cannot be altered before PostgreSQL 17, so the column
  and its GIN index are made again (this rewrites `cars_car` once).
"""

from django.db import migrations, models

# Kept identical to the column and index created by migration 0002, but for the
# configuration.
_VECTOR = """ALTER TABLE cars_car ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
        setweight(to_tsvector('{config}', coalesce(title, '')), 'A') ||
        setweight(to_tsvector('{config}', coalesce(description, '')), 'B')
    ) STORED"""
_DROP_VECTOR = [
    "DROP INDEX IF EXISTS cars_car_search_gin",
    "ALTER TABLE cars_car DROP COLUMN IF EXISTS search_vector",
]
_INDEX = "CREATE INDEX cars_car_search_gin ON cars_car USING GIN (search_vector)"

POSTGRES_FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS unaccent",
    "CREATE TEXT SEARCH CONFIGURATION cars_search (COPY = english)",
    # Words with a non-ASCII letter (and their hyphenated parts) lose their accents
    # before stemming; ASCII words have none to lose.
    """ALTER TEXT SEARCH CONFIGURATION cars_search
        ALTER MAPPING FOR word, hword, hword_part WITH unaccent, english_stem""",
    *_DROP_VECTOR,
    _VECTOR.format(config="cars_search"),
    _INDEX,
]
POSTGRES_BACKWARD = [
    *_DROP_VECTOR,
    _VECTOR.format(config="english"),
    _INDEX,
    "DROP TEXT SEARCH CONFIGURATION IF EXISTS cars_search",
    # The extension stays: something else may have come to use it.
]


def _postgres(statements: list[str]):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for sql in statements:
                schema_editor.execute(sql)

    return run


def _build_vocabulary(apps, schema_editor):
    from cars.search import rebuild_vocabulary

    rebuild_vocabulary(using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [("cars", "0003_pictures")]

    operations = [
        migrations.CreateModel(
            name="SearchWord",
            fields=[
                ("word", models.CharField(max_length=64, primary_key=True, serialize=False)),
                ("spelling", models.CharField(max_length=64)),
                ("occurrences", models.PositiveIntegerField()),
            ],
        ),
        migrations.RunPython(_postgres(POSTGRES_FORWARD), _postgres(POSTGRES_BACKWARD)),
        migrations.RunPython(_build_vocabulary, migrations.RunPython.noop),
    ]

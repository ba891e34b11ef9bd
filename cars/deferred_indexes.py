"""A table's secondary indexes built once, at the end of a bulk write, not row by row.

A first import into an empty catalogue inserts every row. Keeping `cars_car`'s five
secondary indexes (title, updated_at, image status, error, picture) in step row by row
cost half of the INSERTs' time (0.5 s of a 100k-row import); one `CREATE INDEX` each on
the finished table sorts once instead. Worth it only when the table starts empty (else
it would re-sort every row already there), so the caller says when.

SQLite only, and only inside the caller's transaction: the indexes are dropped and
created again within a savepoint of it, so an error or a rollback (a fatal source error)
restores them, and readers, on their WAL snapshot, never see the table without them.
Unique indexes stay: they are constraints the write relies on. Each index is created
again from the very SQL that made it (`sqlite_master`), so nothing is lost.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def deferred_indexes(table: str, *, when: bool) -> Iterator[None]:
    """Drop `table`'s non-unique indexes for the block and create them again at its end,
    when `when` and on SQLite inside a transaction; else do nothing."""
    if not when or connection.vendor != "sqlite" or not connection.in_atomic_block:
        yield
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                "AND sql IS NOT NULL AND sql NOT LIKE 'CREATE UNIQUE %%'",
                [table],
            )
            indexes = cursor.fetchall()
            for name, _ in indexes:
                cursor.execute(f'DROP INDEX "{name}"')
        yield
        with connection.cursor() as cursor:
            for _, sql in indexes:
                cursor.execute(sql)

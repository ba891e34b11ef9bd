"""The row phase: a source's valid rows handed to the catalogue's writer as `CarRow`s,
its rejected rows and the writer's counts kept in the report."""

from collections.abc import Callable, Iterable

from cars.services import CarRow, upsert_cars

from .csv_reader import CsvRow, RejectedRow
from .pictures.pipeline import CarRef
from .report import ImportReport, RowProblem


def apply_rows(
    rows: Iterable[CsvRow | RejectedRow],
    report: ImportReport,
    *,
    refresh_images: bool = False,
    prune: Callable[[str], bool] | None = None,
    progress: Callable[[str, int, None], None] | None = None,
) -> list[tuple[str, CarRef]]:
    """Write `rows` in the caller's transaction; return the references to fetch, as
    `(reference, car)` in source order (each car's pictures in its list's order).

    `prune(key)` (the source's key_seen, asked once every row is read) keeps a car.
    `progress("rows", done, None)` follows every thousand rows.
    """

    def car_rows() -> Iterable[CarRow]:
        for done, row in enumerate(rows, start=1):
            if isinstance(row, CsvRow):
                yield CarRow(
                    row.key,
                    row.title,
                    row.description,
                    row.image or "",
                    row.line,
                    row.description_html or "",
                    row.attributes,
                    more_images=row.images[1:],
                )
            else:
                report.rejected_rows.append(RowProblem(row.line, row.reason, row.message))
                report.counts.rejected += 1
            if progress and done % 1000 == 0:
                progress("rows", done, None)

    done = upsert_cars(car_rows(), refresh_images=refresh_images, prune=prune)
    counts = report.counts
    counts.created += done.created
    counts.updated += done.updated
    counts.unchanged += done.unchanged
    counts.deleted += done.deleted
    return [(f.ref, CarRef(f.car_id, f.line, f.key, f.position)) for f in done.to_fetch]

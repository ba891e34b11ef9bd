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
    `(reference, car)` in source order.

    `prune(key)` (the source's key_seen, asked once every row is read) keeps a car.
    `progress("rows", done, None)` follows every thousand rows.
    """

    further = 0

    def car_rows() -> Iterable[CarRow]:
        nonlocal further
        for done, row in enumerate(rows, start=1):
            if isinstance(row, CsvRow):
                further += max(0, len(row.images) - 1)
                yield CarRow(
                    row.key,
                    row.title,
                    row.description,
                    row.image or "",
                    row.line,
                    row.description_html or "",
                    row.attributes,
                )
            else:
                report.rejected_rows.append(RowProblem(row.line, row.reason, row.message))
                report.counts.rejected += 1
            if progress and done % 1000 == 0:
                progress("rows", done, None)

    done = upsert_cars(car_rows(), refresh_images=refresh_images, prune=prune)
    if further:
        report.warnings.append(
            f"{further} pictures after each car's first were named but are not stored: "
            "only the first picture of a car is imported yet"
        )
    counts = report.counts
    counts.created += done.created
    counts.updated += done.updated
    counts.unchanged += done.unchanged
    counts.deleted += done.deleted
    refs = [(f.ref, CarRef(f.car_id, f.row.line, f.row.key)) for f in done.to_fetch]
    return refs

"""`python manage.py import_csv [SOURCE]`: a thin CLI over imports.services.run_import."""

import json
import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from imports.columns import MappingError, checked_map
from imports.lifecycle import SourceBusy, create_job, fail_job
from imports.report import ImportReport
from imports.runner import run_job
from imports.services import run_import
from imports.sources import SourceError


class Command(BaseCommand):
    help = "Import cars from a CSV file or http(s) URL, then fetch and render their images."
    # The system checks (URLconf, admin, DRF: `manage.py check`, run by CI and deploys)
    # loaded the whole URLconf and its views first: 0.3-0.6 s of CPU before every import.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("source", nargs="?", help="CSV path or URL (default CARS_CSV_SOURCE)")
        parser.add_argument(
            "--dry-run", action="store_true", help="validate and report, change nothing"
        )
        parser.add_argument(
            "--prune", action="store_true", help="delete cars whose key is not in the source"
        )
        parser.add_argument(
            "--workers", type=int, help="concurrent image downloads (default CARS_IMPORT_WORKERS)"
        )
        parser.add_argument("--report", type=Path, metavar="FILE", help="write a JSON report")
        parser.add_argument(
            "--refresh-images", action="store_true", help="re-download unchanged image URLs"
        )
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument(
            "--map",
            action="append",
            default=[],
            metavar="FIELD=COLUMN",
            help="the column of a field (id, title, description, image), or a template "
            "of columns: --map 'title={make} {model} {year}' (repeatable)",
        )
        parser.add_argument(
            "--encoding", help="the source's encoding (default: detected), e.g. cp1252"
        )
        parser.add_argument(
            "--no-images",
            action="store_true",
            help="with --dry-run: check the mapping and the rows only, fetch no picture",
        )

    def handle(self, *args, **options) -> None:
        workers = options["workers"]
        if workers is not None and workers < 1:
            raise CommandError("--workers must be at least 1", returncode=2)
        if options["source"] is not None and not options["source"].strip():
            raise CommandError("SOURCE is empty", returncode=2)
        if options["no_images"] and not options["dry_run"]:
            raise CommandError("--no-images goes with --dry-run", returncode=2)
        options["map"] = _column_map(options["map"])
        with _progress_bar(enabled=not options["no_progress"] and sys.stderr.isatty()) as bar:
            try:
                report = self._run(options, workers, bar)
            except (SourceError, SourceBusy) as exc:
                raise CommandError(str(exc), returncode=1) from None
            except DatabaseError as exc:
                # Rolled back: nothing half-applied. One line, not a traceback (SPEC §4).
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else "failed"
                raise CommandError(f"database error: {message}", returncode=1) from None
        self.stderr.write(f"encoding: {report.encoding}")
        for name, column in report.mapping.items():
            if name != "attributes":
                self.stderr.write(f"mapping: {name} <- {column}")
        attributes = report.mapping.get("attributes", [])
        if attributes:
            self.stderr.write(f"mapping: attributes <- {len(attributes)} other columns")
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        for row in report.rejected_rows:
            self.stderr.write(f"line {row.line}: rejected ({row.reason}): {row.message}")
        for failure in report.image_failures:
            self.stderr.write(
                f"line {failure.line}: image failed ({failure.reason}): {failure.message}"
            )
        pictures = report.pictures
        if pictures.new or pictures.shared:
            self.stderr.write(f"pictures: {pictures.new} new, {pictures.shared} shared")
        if options["report"]:
            options["report"].write_text(json.dumps(report.as_dict(), indent=2) + "\n")
        self.stdout.write(report.summary())

    def _run(self, options, workers, progress) -> ImportReport:
        """A dry run changes nothing, not even the job list; a real run is a recorded job."""
        source = options["source"] or settings.CARS_CSV_SOURCE
        if options["dry_run"]:
            return run_import(
                source=source,
                prune=options["prune"],
                dry_run=True,
                workers=workers,
                refresh_images=options["refresh_images"],
                progress=progress,
                columns=options["map"],
                encoding=options["encoding"],
                fetch_images=not options["no_images"],
            )
        job = create_job(
            source=source,
            prune=options["prune"],
            refresh_images=options["refresh_images"],
            column_map=options["map"],
            encoding=options["encoding"] or "",
        )
        try:
            return run_job(job.pk, workers=workers, progress=progress)
        except SourceBusy as exc:
            fail_job(job, str(exc))
            raise


def _column_map(specs: list[str]) -> dict[str, str]:
    """`--map FIELD=COLUMN` options as {field: column or template}; bad ones are usage errors."""
    try:
        return checked_map(specs)
    except MappingError as exc:
        raise CommandError(str(exc), returncode=2) from None


class _progress_bar:
    """tqdm bars on stderr for the rows and images stages; a no-op when disabled."""

    def __init__(self, *, enabled: bool):
        self.enabled = enabled
        self.bars: dict = {}

    def __enter__(self):
        return self if self.enabled else None

    def __exit__(self, *exc) -> None:
        for bar in self.bars.values():
            bar.close()

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        from tqdm import tqdm

        bar = self.bars.get(stage)
        if bar is None:
            bar = self.bars[stage] = tqdm(
                total=total, desc=stage, unit=" " + stage, file=sys.stderr
            )
        bar.update(done - bar.n)

"""Bulk rows without images: speed against sqlite-utils, peak memory at 1M.

Each import runs `manage.py import_csv` on a fresh database (migrated first, untimed).
The imported tables are kept for the API benchmarks of the same run (`table(rows)`).

The reference does the same work: `sqlite-utils insert --csv` and then `enable-fts` on
title and description (our import keeps that search index too); plain `insert` is
information, with the issue's goal (#26: ≥ 0.8× of it) in its note. CPU seconds are
shown beside the wall times: sqlite-utils commits every 100 rows, so its wall time
follows the disk's fsync latency, which other work on a shared machine moves a lot.
"""

import json

from . import data, references
from .common import Config, Site, manage, migrate
from .report import Row, at_least, at_most, info, rate, seconds

MEMORY_LIMIT_MB = 200
_tables: dict[int, dict] = {}  # rows → the import's figures (with its Site), this run


def import_rows(rows: int) -> dict:
    """Import `rows` generated rows into a fresh site; the figures of that import."""
    csv_path = data.rows_csv(rows)
    site = Site.fresh(f"rows-{rows}")
    migrate(site)
    report_path = site.folder / "report.json"
    timed = manage(site, "import_csv", str(csv_path), "--no-progress", "--report", str(report_path))
    report = json.loads(report_path.read_text())
    if report["counts"]["created"] != rows:
        raise RuntimeError(f"import of {rows} rows created {report['counts']['created']}")
    figures = {
        "rows": rows,
        "csv_mb": csv_path.stat().st_size / 1e6,
        "seconds": timed.seconds,
        "cpu_seconds": timed.cpu_seconds,
        "rows_per_s": rows / timed.seconds,
        "peak_rss_mb": timed.peak_rss_mb,
        "timings": report.get("timings") or {},
        "site": site,
    }
    _tables[rows] = figures
    return figures


def reimport(rows: int) -> dict:
    """The same CSV again on the same database: every row an unchanged upsert."""
    site = _tables[rows]["site"]
    report_path = site.folder / "report-again.json"
    timed = manage(
        site,
        "import_csv",
        str(data.rows_csv(rows)),
        "--no-progress",
        "--report",
        str(report_path),
        log_name="import-again",
    )
    counts = json.loads(report_path.read_text())["counts"]
    return {"seconds": timed.seconds, "peak_rss_mb": timed.peak_rss_mb, "counts": counts}


def table(rows: int) -> Site:
    """A site holding `rows` imported cars: the one this run made already, or a new one."""
    if rows not in _tables:
        import_rows(rows)
    return _tables[rows]["site"]


def run(cfg: Config) -> tuple[dict, list[Row]]:
    # Alternated, best of `attempts` each: the machine is shared, load comes and goes.
    csv_path = data.rows_csv(cfg.bulk_rows)
    tries, fts_tries, plain_tries = [], [], []
    for _ in range(cfg.attempts):
        tries.append(import_rows(cfg.bulk_rows))
        fts_tries.append(references.sqlite_utils_insert(csv_path, fts=True))
        plain_tries.append(references.sqlite_utils_insert(csv_path))
    ours = min(tries, key=lambda t: t["seconds"])
    ref = min(fts_tries, key=lambda t: t["seconds"])
    plain = min(plain_tries, key=lambda t: t["seconds"])
    again = reimport(cfg.bulk_rows)  # on the last attempt's database
    big = _tables.get(cfg.big_rows) or import_rows(cfg.big_rows)
    n = f"{cfg.bulk_rows // 1000}k"
    big_n = f"{cfg.big_rows // 1000}k" if cfg.big_rows < 1_000_000 else "1M"
    cpu = min(t["cpu_seconds"] for t in tries)
    results = {
        "bulk": _public(ours),
        "bulk_attempts_s": [t["seconds"] for t in tries],
        "sqlite_utils_fts_attempts_s": [t["seconds"] for t in fts_tries],
        "sqlite_utils_attempts_s": [t["seconds"] for t in plain_tries],
        "reimport": again,
        "sqlite_utils_fts": ref,
        "sqlite_utils": plain,
        "big": _public(big),
    }
    rows = [
        at_least(
            f"{n} rows, no images (vs sqlite-utils insert + enable-fts)",
            f"{seconds(ours['seconds'])} ({rate(ours['rows_per_s'], 'rows/s')})",
            f"{seconds(ref['seconds'])} ({rate(ref['rows_per_s'], 'rows/s')})",
            ref["seconds"] / ours["seconds"],
            1,
            note=f"ratio = sqlite-utils time ÷ ours; best of {cfg.attempts} each; CPU "
            f"{cpu:.2f} s vs {min(t['cpu_seconds'] for t in fts_tries):.2f} s",
        ),
        info(
            "  vs plain sqlite-utils insert --csv (no search index)",
            seconds(ours["seconds"]),
            seconds(plain["seconds"]),
            plain["seconds"] / ours["seconds"],
            note=f"goal ≥ 0.8× (#26); CPU {cpu:.2f} s vs "
            f"{min(t['cpu_seconds'] for t in plain_tries):.2f} s",
        ),
        info(
            f"{n} rows re-imported (all unchanged)",
            seconds(again["seconds"]),
            seconds(ref["seconds"]),
            ref["seconds"] / again["seconds"],
            note="natural-key upserts, nothing to write",
        ),
        at_most(
            f"{big_n} rows peak RSS",
            f"{big['peak_rss_mb']:.0f} MB",
            f"{MEMORY_LIMIT_MB} MB",
            big["peak_rss_mb"] / MEMORY_LIMIT_MB,
            1,
            note=f"import took {seconds(big['seconds'])}, {rate(big['rows_per_s'], 'rows/s')}",
        ),
    ]
    return results, rows


def _public(figures: dict) -> dict:
    return {k: (str(v.folder) if k == "site" else v) for k, v in figures.items()}

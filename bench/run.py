"""`make bench`: run the benchmarks, print the table, write bench/out/results.json.

    .venv/bin/python bench/run.py [--quick] [--check] [--only NAME[,NAME]] [--out FILE]

NAME is one of: imports, renditions, bulk, api, pipeline, search, engine (OpenSearch, when
a node answers), feeds. `--quick` uses smaller sizes and short wrk runs (the smoke test).
Exit status 1 when a benchmark could not run; misses of a target are results, not errors,
unless `--check` (CI, `.ci/run`): then also 1 when a row is worse than half its target
(bench.report.regressed: loose on purpose, the machines are shared and noisy).
"""

import argparse
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import api, bulk, feeds, imports, pipeline, renditions, search, search_engine
from bench.common import OUT, ROOT, Config
from bench.references import pyvips_missing
from bench.report import SLACK, Row, regressions, table, write_json

BENCHMARKS = {
    "imports": imports.run,
    "renditions": renditions.run,
    "bulk": bulk.run,
    "api": api.run,
    "pipeline": pipeline.run,
    "search": search.run,
    "engine": search_engine.run,
    "feeds": feeds.run,  # after bulk and pipeline: it compares with their figures
}


def missing_tools(name: str) -> str | None:
    if name == "api" and not shutil.which("wrk"):
        return "wrk not installed (apt-get install -y wrk)"
    if name == "engine" and not search_engine.available():
        return f"no OpenSearch node answers on {search_engine.SEARCH_URL} (make services)"
    return None


def meta(cfg: Config) -> dict:
    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            return "n/a"

    import django
    import PIL

    try:
        import pyvips

        vips = f"pyvips {pyvips.__version__}, libvips {pyvips.version(0)}.{pyvips.version(1)}"
    except Exception:
        vips = pyvips_missing()
    changes = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout.strip()
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": asdict(cfg),
        "git": version(["git", "rev-parse", "--short", "HEAD"]) + ("+changes" if changes else ""),
        "machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
        "versions": {
            "python": platform.python_version(),
            "django": django.__version__,
            "pillow": PIL.__version__,
            "sqlite": sqlite3.sqlite_version,
            "vips": vips,
            "wrk": version(["wrk", "--version"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks of the image_backend project.")
    parser.add_argument("--quick", action="store_true", help="small sizes, short wrk runs")
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help=", ".join(BENCHMARKS)
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help=f"exit 1 when a ratio is worse than its target by {SLACK:g}× (CI)",
    )
    parser.add_argument("--out", type=Path, default=OUT / "results.json")
    args = parser.parse_args(argv)
    names = [n.strip() for value in args.only for n in value.split(",") if n.strip()]
    names = names or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    cfg = Config.make(args.quick)
    info = meta(cfg)
    results: dict = {}
    rows: list[Row] = []
    failed = False
    for name in [n for n in BENCHMARKS if n in names]:
        print(f"» {name} …", file=sys.stderr, flush=True)
        start = time.perf_counter()
        reason = missing_tools(name)
        if reason:
            results[name] = {"skipped": reason}
            rows.append(Row(name, "skipped", "", None, "", None, reason))
            continue
        try:
            results[name], found = BENCHMARKS[name](cfg)
            rows += found
        except Exception as exc:
            failed = True
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            rows.append(Row(name, "ERROR", "", None, "", False, f"{type(exc).__name__}: {exc}"))
        elapsed = time.perf_counter() - start
        results.setdefault(name, {})["elapsed_s"] = elapsed
        print(f"  {name} done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    info["machine"]["loadavg_end"] = os.getloadavg()
    info["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    write_json(args.out, info, results, rows)
    mode = "quick" if cfg.quick else "full"
    print(f"\nbench ({mode}, {info['git']}, load {info['machine']['loadavg_start'][0]:.1f})\n")
    print(table(rows))
    load = max(info["machine"]["loadavg_start"][0], info["machine"]["loadavg_end"][0])
    if load > (os.cpu_count() or 1) * 0.75:
        print(
            f"\nwarning: load average reached {load:.1f} on {os.cpu_count()} cores: other "
            "processes shared the machine, so absolute figures are noisy (ratios less so)."
        )
    print(f"\nresults: {args.out}")
    if args.check:
        worse = regressions(rows)
        for row in worse:
            found = "not ok" if row.direction == "ok" else f"{row.ratio:.2f}"
            print(f"check: {row.benchmark.strip()}: {found}, target {row.target}")
        print(f"check: {len(worse)} row(s) worse than their target loosened {SLACK:g}×")
        failed = failed or bool(worse)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

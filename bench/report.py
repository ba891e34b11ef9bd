"""Result rows, the printed table and results.json."""

import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Row:
    """One line of the table: a figure of ours against a reference, with its target.

    `ratio` is oriented so the target reads naturally: `≥ goal` for speed-ups, `≤ goal` for
    slow-downs and sizes. `passed` is None when there is no verdict (an info row, or a
    reference that could not be measured). `direction` and `goal` say the target in a form
    `regressions` can judge ("≥", "≤", "±" around 1, "ok" for a check); "" for info.
    """

    benchmark: str
    ours: str
    reference: str
    ratio: float | None
    target: str
    passed: bool | None
    note: str = ""
    direction: str = ""
    goal: float | None = None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "-"}[self.passed]


def at_least(benchmark: str, ours: str, reference: str, ratio: float | None, goal: float, **kw):
    passed = None if ratio is None else ratio >= goal
    return Row(
        benchmark, ours, reference, ratio, f"≥ {goal:g}×", passed, **kw, direction="≥", goal=goal
    )


def at_most(benchmark: str, ours: str, reference: str, ratio: float | None, goal: float, **kw):
    passed = None if ratio is None else ratio <= goal
    return Row(
        benchmark, ours, reference, ratio, f"≤ {goal:g}×", passed, **kw, direction="≤", goal=goal
    )


def within(benchmark: str, ours: str, reference: str, ratio: float | None, tolerance: float, **kw):
    passed = None if ratio is None else abs(ratio - 1) <= tolerance
    return Row(
        benchmark,
        ours,
        reference,
        ratio,
        f"1 ± {tolerance:g}",
        passed,
        **kw,
        direction="±",
        goal=tolerance,
    )


def check(benchmark: str, ours: str, reference: str, passed: bool, **kw):
    return Row(benchmark, ours, reference, None, "all ok", passed, **kw, direction="ok")


def info(benchmark: str, ours: str, reference: str = "", ratio: float | None = None, **kw):
    return Row(benchmark, ours, reference, ratio, "", None, **kw)


# `--check` fails a run on a ratio worse than its goal by this factor, not on a plain miss:
# these machines are shared and noisy, and the check is to catch a regression, not to judge.
SLACK = 2.0


def regressed(row: Row, slack: float = SLACK) -> bool:
    """Whether `row` is worse than its target loosened `slack` times: below goal ÷ slack
    for `≥`, above goal × slack for `≤`, off 1 by more than tolerance × slack for `±`; a
    failed check (correctness, not speed) always. An info row, or a row whose reference
    could not be measured (no ratio), never."""
    if row.direction == "ok":
        return row.passed is False
    if row.goal is None or row.ratio is None:
        return False
    if row.direction == "≥":
        return row.ratio < row.goal / slack
    if row.direction == "≤":
        return row.ratio > row.goal * slack
    if row.direction == "±":
        return abs(row.ratio - 1) > row.goal * slack
    raise ValueError(f"{row.benchmark}: unknown direction {row.direction!r}")


def regressions(rows: list[Row], slack: float = SLACK) -> list[Row]:
    return [row for row in rows if regressed(row, slack)]


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def rate(value: float | None, unit: str = "req/s") -> str:
    return "n/a" if value is None else f"{value:,.0f} {unit}"


COLUMNS = ("benchmark", "ours", "reference", "ratio", "target", "")


def table(rows: list[Row]) -> str:
    cells = [
        (
            r.benchmark,
            r.ours,
            r.reference,
            "" if r.ratio is None else f"{r.ratio:.2f}",
            r.target,
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [COLUMNS, *cells]) for i in range(len(COLUMNS))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row, cell in zip(rows, cells, strict=True):
        line = "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip()
        lines.append(line + (f"   ({row.note})" if row.note else ""))
    verdicts = [r.passed for r in rows if r.passed is not None]
    lines.append(f"\n{verdicts.count(True)} pass, {verdicts.count(False)} miss")
    return "\n".join(lines)


def write_json(path: Path, meta: dict, results: dict, rows: list[Row]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": meta,
        "results": results,
        "table": [{**asdict(r), "verdict": r.verdict} for r in rows],
        "summary": {
            "pass": sum(r.passed is True for r in rows),
            "miss": sum(r.passed is False for r in rows),
            "misses": [r.benchmark for r in rows if r.passed is False],
        },
    }
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")

"""The benchmark harness still runs: `bench/run.py --quick --only renditions` (~10 s)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench


def _missing_tools() -> str | None:
    if shutil.which("wrk") is None:
        return "wrk is not installed (`make bench` installs it)"
    try:
        import pyvips  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libvips is missing
        return f"pyvips is not available ({exc}); `make bench` installs requirements-bench.txt"
    return None


def test_quick_renditions_bench_writes_results(tmp_path):
    reason = _missing_tools()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--only", "renditions", "--out", str(out)],
        cwd=ROOT,
        env={**os.environ, "BENCH_OUT": str(tmp_path / "out")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]

    doc = json.loads(out.read_text())
    assert set(doc) == {"meta", "results", "table", "summary"}
    assert doc["meta"]["config"]["quick"] is True
    assert set(doc["summary"]) == {"pass", "miss", "misses"}

    result = doc["results"]["renditions"]
    assert {"upright", "1600x1200", "problems", "platforms_match", "elapsed_s"} <= set(result)
    assert result["platforms_match"] is True and result["problems"] == []
    for size in ("upright", "1600x1200"):
        assert result[size]["ours"]["median_s"] > 0
        assert result[size]["pyvips"]["median_s"] > 0
        assert result[size]["floor"]["cpu_s"] > 0
        assert set(result[size]["quality"]["psnr_db"]) == {"default", "web", "mobile"}

    rows = {row["benchmark"]: row for row in doc["table"]}
    for row in rows.values():
        assert set(row) == {
            "benchmark",
            "ours",
            "reference",
            "ratio",
            "target",
            "passed",
            "note",
            "direction",
            "goal",
            "verdict",
        }
    timing = rows["renditions per picture 4000×3000"]
    assert timing["ratio"] > 0 and timing["passed"] in (True, False)
    assert timing["verdict"] in ("PASS", "MISS")
    assert (timing["direction"], timing["goal"]) == ("≤", 1)  # what --check judges
    assert "renditions per picture 4000×3000" in proc.stdout  # the table was printed

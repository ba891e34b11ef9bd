"""The fetching limits of the security review (issue #15), proved on the real importer:
`manage.py import_csv` in a subprocess, against a real local HTTP server.

- gzip bombs (1 GiB of zeros gzipped twice: 1,827 bytes on the wire) are `too_large`, for
  an image and for the CSV itself, and the importer's peak RSS stays small;
- one deadline (`CARS_FETCH_DEADLINE`) covers all redirects and retries of a fetch;
- a symlink loop beside a local CSV fails that row's image, not the import.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.httpserver import LocalHTTPServer, encode, gzip_bomb
from tests.support.images import jpeg_bytes
from tests.support.project import ROOT
from tests.support.stack import running_stack

MiB = 1024 * 1024
# Peak RSS allowed to the import_csv process that meets a bomb: Django, Pillow and the
# fetch threads (a small import peaks at about 95 MiB), plus what the caps let through.
# Measured here: 134 MiB with two image bombs, 285 MiB with a CSV bomb; before the fix,
# 3.1 GiB and 2.1 GiB.
IMAGE_BOMB_PEAK = 250 * MiB
CSV_CAP = 200_000_000  # CARS_CSV_MAX_BYTES's default, set explicitly so the bound is clear
CSV_BOMB_PEAK = CSV_CAP + 150 * MiB
# Many bombs in one import: each fetch thread may hold one capped body at a time.
BOMBS = 128
FETCH_THREADS = 16  # CARS_IMPORT_WORKERS's default
IMAGE_CAP = 20_000_000  # CARS_IMAGE_MAX_BYTES's default
BASELINE = 100 * MiB


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int
    """The largest resident set of the process (or of any child it waited for), in bytes."""


# Runs argv[2:] and writes its ru_maxrss (KiB) to argv[1]. A process's ru_maxrss starts
# from the resident size of the process that spawned it (Linux carries the old memory's
# high-water mark over exec), so the command is started from this small helper rather
# than from the test process, whose own size would be measured instead.
_MEASURE = """\
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def manage_measured(env: dict[str, str], *args: str, timeout: float = 120) -> Finished:
    """`python manage.py *args` as `tests.support.project.manage` runs it, and its peak RSS."""
    peak_file = Path(env["MEDIA_ROOT"]).parent / "peak_rss_kib"
    command = [sys.executable, "-c", _MEASURE, str(peak_file), sys.executable, "manage.py"]
    process = subprocess.Popen(
        [*command, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a timeout kills the helper and manage.py both
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    peak_rss = int(peak_file.read_text()) * 1024  # Linux reports KiB
    return Finished(process.returncode, stdout, stderr, peak_rss)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["id,title,image"] + [f"{n},{title},{image}" for n, (title, image) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def image_failures(report: Path) -> dict[int, tuple[str, str]]:
    data = json.loads(report.read_text())
    return {f["line"]: (f["reason"], f["message"]) for f in data["image_failures"]}


pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="peak RSS as Linux reports it (KiB)"
)


# --- gzip bombs -------------------------------------------------------------------------------


def test_an_image_gzip_bomb_is_too_large_and_the_importer_stays_small(
    http_server: LocalHTTPServer, migrated_env, tmp_path
):
    bomb = {"Content-Encoding": "gzip, gzip", "Content-Type": "image/jpeg"}
    http_server.add("/bomb.jpg", gzip_bomb(), headers=bomb)
    http_server.add("/chunked-bomb.jpg", gzip_bomb(), headers=bomb, framing="chunked")
    # An honest server that compresses everything still works.
    http_server.add(
        "/car.jpg", encode(jpeg_bytes(64, 48), "gzip"), headers={"Content-Encoding": "gzip"}
    )
    source = write_csv(
        tmp_path / "cars.csv",
        [
            ("Bomb", http_server.url("/bomb.jpg")),
            ("Chunked bomb", http_server.url("/chunked-bomb.jpg")),
            ("Car", http_server.url("/car.jpg")),
        ],
    )
    report = tmp_path / "report.json"

    done = manage_measured(
        migrated_env, "import_csv", str(source), "--no-progress", "--report", str(report)
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith("images: 1 ok, 2 failed")
    failures = image_failures(report)
    assert {line: reason for line, (reason, _) in failures.items()} == {
        2: "too_large",
        3: "too_large",
    }
    print(f"import_csv peak RSS with two image bombs: {done.peak_rss / MiB:.0f} MiB")
    assert done.peak_rss < IMAGE_BOMB_PEAK, f"peak RSS {done.peak_rss / MiB:.0f} MiB"


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_csv_gzip_bomb_is_too_large_and_the_importer_stays_small(
    http_server: LocalHTTPServer, migrated_env, framing
):
    http_server.add(
        "/cars.csv",
        gzip_bomb(),
        headers={"Content-Encoding": "gzip, gzip", "Content-Type": "text/csv"},
        framing=framing,
    )
    env = migrated_env | {"CARS_CSV_MAX_BYTES": str(CSV_CAP)}

    done = manage_measured(env, "import_csv", http_server.url("/cars.csv"), "--no-progress")

    assert done.returncode == 1, done.stderr
    assert "too_large" in done.stderr and "crashed" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    print(f"import_csv peak RSS with a CSV bomb ({framing}): {done.peak_rss / MiB:.0f} MiB")
    assert done.peak_rss < CSV_BOMB_PEAK, f"peak RSS {done.peak_rss / MiB:.0f} MiB"


# --- one deadline per fetch -------------------------------------------------------------------


def add_slow_redirects(server: LocalHTTPServer, name: str, body: bytes) -> str:
    """/name0 -> ... -> /name5, each answering after 0.4 s: every request is quick
    enough for CARS_FETCH_TIMEOUT, the chain as a whole takes 2.4 s."""
    for hop in range(5):
        server.add(f"/{name}{hop}", redirect_to=f"/{name}{hop + 1}", delay=0.4)
    server.add(f"/{name}5", body, delay=0.4)
    return server.url(f"/{name}0")


def test_cars_fetch_deadline_bounds_each_image_and_the_csv(
    http_server: LocalHTTPServer, migrated_env, tmp_path
):
    slow_image = add_slow_redirects(http_server, "img", jpeg_bytes(64, 48))
    http_server.add("/fast.jpg", jpeg_bytes(64, 48))
    source = write_csv(
        tmp_path / "cars.csv", [("Slow", slow_image), ("Fast", http_server.url("/fast.jpg"))]
    )
    report = tmp_path / "report.json"
    env = migrated_env | {"CARS_FETCH_TIMEOUT": "5", "CARS_FETCH_DEADLINE": "1"}

    done = manage_measured(env, "import_csv", str(source), "--no-progress", "--report", str(report))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith("images: 1 ok, 1 failed")
    reason, message = image_failures(report)[2]
    assert reason == "unreachable"
    assert "1 s deadline" in message and "redirects and retries" in message, message
    assert http_server.hits["/img5"] == 0

    slow_csv = add_slow_redirects(
        http_server, "csv", f"title,image\nA,{http_server.url('/fast.jpg')}\n".encode()
    )
    done = manage_measured(env, "import_csv", slow_csv, "--no-progress")

    assert done.returncode == 1, done.stderr
    assert "unreachable" in done.stderr and "1 s deadline" in done.stderr, done.stderr
    assert http_server.hits["/csv5"] == 0


# --- local files ------------------------------------------------------------------------------


def test_a_symlink_loop_beside_a_local_csv_fails_only_that_image(migrated_env, tmp_path):
    folder = tmp_path / "catalog"
    folder.mkdir()
    (folder / "car.jpg").write_bytes(jpeg_bytes(64, 48))
    (folder / "loop.jpg").symlink_to("loop.jpg")
    (folder / "ping.jpg").symlink_to("pong.jpg")
    (folder / "pong.jpg").symlink_to("ping.jpg")
    source = write_csv(
        folder / "cars.csv", [("Loop", "loop.jpg"), ("Ping", "ping.jpg"), ("Car", "car.jpg")]
    )
    report = tmp_path / "report.json"

    done = manage_measured(
        migrated_env, "import_csv", str(source), "--no-progress", "--report", str(report)
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == (
        "created 3, updated 0, unchanged 0, deleted 0, rejected 0 rows; images: 1 ok, 2 failed"
    )
    reasons = {line: reason for line, (reason, _) in image_failures(report).items()}
    assert reasons.keys() == {2, 3}
    assert set(reasons.values()) <= {"blocked_path", "unreachable"}


def test_many_image_bombs_in_one_import_cost_at_most_one_cap_per_fetch_thread(
    http_server: LocalHTTPServer, migrated_env, tmp_path
):
    """128 distinct bomb URLs, each refused at the cap: no refused body outlives its fetch
    (an exception's traceback kept the decoded chunks alive until a cyclic collection),
    so the peak is the baseline plus at most one cap per fetch thread."""
    bomb = {"Content-Encoding": "gzip, gzip", "Content-Type": "image/jpeg"}
    body = gzip_bomb()
    rows = []
    for n in range(BOMBS):
        http_server.add(f"/bomb{n}.jpg", body, headers=bomb)
        rows.append((f"Bomb {n}", http_server.url(f"/bomb{n}.jpg")))
    source = write_csv(tmp_path / "cars.csv", rows)
    env = migrated_env | {"CARS_IMPORT_WORKERS": str(FETCH_THREADS)}

    done = manage_measured(env, "import_csv", str(source), "--no-progress", timeout=300)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].endswith(f"images: 0 ok, {BOMBS} failed")
    print(f"import_csv peak RSS with {BOMBS} image bombs: {done.peak_rss / MiB:.0f} MiB")
    bound = BASELINE + FETCH_THREADS * IMAGE_CAP
    assert done.peak_rss < bound, f"peak RSS {done.peak_rss / MiB:.0f} MiB"


@pytest.mark.stack
def test_image_bombs_in_celery_chunks_cost_a_worker_at_most_one_cap_per_fetch_thread(
    http_server: LocalHTTPServer, tmp_path
):
    """Eight chunks of 16 bombs, one after the other in the same worker process: what one
    chunk refused is gone before the next, so the worker's high-water mark is its size
    before the import plus one cap per fetch thread (and the modules a first import loads)."""
    cap, bombs = 5_000_000, 128
    bomb = {"Content-Encoding": "gzip, gzip", "Content-Type": "image/jpeg"}
    body = gzip_bomb()
    rows = []
    for n in range(bombs):
        http_server.add(f"/bomb{n}.jpg", body, headers=bomb)
        rows.append((f"Bomb {n}", http_server.url(f"/bomb{n}.jpg")))
    source = write_csv(tmp_path / "cars.csv", rows)
    env = {"CARS_IMAGE_MAX_BYTES": str(cap), "CARS_IMAGE_CHUNK": "16", "CARS_SYNC_INTERVAL": "0"}

    with running_stack(tmp_path / "stack", env, beat=False, worker=False) as stack:
        stack.start_worker(concurrency=1)
        worker = stack.processes["worker"].pid
        child = stack.wait_for("the worker's pool process", lambda: _children(worker))[0]
        before = _status_kib(child, "VmRSS") * 1024
        out = stack.manage(
            "shell",
            "-c",
            "from imports.jobs import submit_job; from imports.lifecycle import create_job;"
            f"job = create_job(source={str(source)!r}, trigger='api'); submit_job(job);"
            "print(job.pk)",
        )
        job_id = int(out.strip().splitlines()[-1])

        def finished():
            rows = stack.query(f"SELECT status, counts FROM imports_importjob WHERE id = {job_id}")
            return rows and rows[0][0] in ("succeeded", "failed") and rows[0]

        status, counts = stack.wait_for("the job", finished, timeout=180)
        peak = _status_kib(child, "VmHWM") * 1024

    counts = counts if isinstance(counts, dict) else json.loads(counts)
    assert status == "succeeded" and counts["images_failed"] == bombs, (status, counts)
    print(f"worker peak {peak / MiB:.0f} MiB, {before / MiB:.0f} MiB before the import")
    assert peak < before + 100 * MiB + FETCH_THREADS * cap, f"peak {peak / MiB:.0f} MiB"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")

"""Shared plumbing: paths, the project's environment, timed child processes, servers.

Every benchmark runs the project for real, as separate processes (manage.py, gunicorn),
each on a fresh SQLite file and a fresh MEDIA_ROOT under bench/out/.
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = BENCH / "data"
OUT = Path(os.environ.get("BENCH_OUT") or BENCH / "out")  # the smoke test uses a tmp dir
BIN = Path(sys.executable).parent
PYTHON = sys.executable
MANAGE = str(ROOT / "manage.py")


@dataclass(frozen=True)
class Site:
    """One fresh project instance: its SQLite file and media folder."""

    name: str
    db: Path
    media: Path

    @classmethod
    def fresh(cls, name: str) -> "Site":
        folder = OUT / "sites" / name
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "media").mkdir(parents=True)
        return cls(name, folder / "db.sqlite3", folder / "media")

    @property
    def folder(self) -> Path:
        return self.db.parent

    def env(self, **extra: str) -> dict[str, str]:
        return project_env(self.db, self.media, **extra)


def project_env(db: Path, media: Path, **extra: str) -> dict[str, str]:
    """The environment of every project process: development settings with DEBUG off, as
    production runs (with DEBUG on, Django logs every statement and has SQLite quote each
    one's parameters: a fifth of a 100k-row feed's row phase), inline tasks."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.development",
        DEBUG="false",
        DATABASE_URL=f"sqlite:///{db}",
        MEDIA_ROOT=str(media),
        LOG_LEVEL="WARNING",
        REDIS_URL="",  # no Redis cache and no broker: imports and renditions run inline
        CELERY_BROKER_URL="",
        USE_S3="false",
        CARS_ALLOW_PRIVATE_URLS="true",  # the image server is on 127.0.0.1
        CARS_IMPORT_WORKERS="16",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@dataclass(frozen=True)
class Timed:
    seconds: float
    cpu_seconds: float  # user + system, of the child and what it waited for
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


# Peak RSS must be measured from a small parent: Linux carries a process's RSS high-water
# mark across fork and exec, so a child spawned straight from this (large) process would
# report this process's size. This launcher (python -S, a few MB) forks the command, times
# it and writes its wall time and rusage to a file.
_LAUNCHER = """
import json, os, sys, time
report, cmd = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(cmd[0], cmd)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
with open(report, "w") as fh:
    cpu = usage.ru_utime + usage.ru_stime
    json.dump({"seconds": seconds, "cpu_seconds": cpu, "maxrss_kb": usage.ru_maxrss}, fh)
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def run_timed(cmd: list[str], *, env: dict[str, str], log: Path | None = None) -> Timed:
    """Run `cmd` to its end: its wall time and peak RSS (wait4 in a small launcher)."""
    log = log or OUT / "logs" / "last.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log.with_suffix(".out"), log.with_suffix(".err")
    usage_path = log.with_suffix(".rusage.json")
    usage_path.unlink(missing_ok=True)
    launcher = [PYTHON, "-S", "-c", _LAUNCHER, str(usage_path), *cmd]
    with out_path.open("w") as out, err_path.open("w") as err:
        returncode = subprocess.run(launcher, cwd=ROOT, env=env, stdout=out, stderr=err).returncode
    usage = json.loads(usage_path.read_text())
    return Timed(
        seconds=usage["seconds"],
        cpu_seconds=usage["cpu_seconds"],
        peak_rss_mb=usage["maxrss_kb"] / 1024,  # Linux reports KiB
        returncode=returncode,
        stdout=out_path.read_text(),
        stderr=err_path.read_text(),
    )


def manage(site: Site, *args: str, log_name: str = "manage", **env_extra: str) -> Timed:
    result = run_timed(
        [PYTHON, MANAGE, *args], env=site.env(**env_extra), log=OUT / "logs" / site.name / log_name
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"manage.py {' '.join(args)} failed ({result.returncode}):\n{result.stderr[-3000:]}"
        )
    return result


def import_csv(
    site: Site, csv_path: Path, *, workers: int, report_path: Path, log_name: str
) -> tuple["Timed", dict]:
    """`manage.py import_csv` timed, with its JSON report read back."""
    timed = manage(
        site,
        "import_csv",
        str(csv_path),
        "--no-progress",
        "--report",
        str(report_path),
        log_name=log_name,
        CARS_IMPORT_WORKERS=str(workers),
    )
    return timed, json.loads(report_path.read_text())


def migrate(site: Site) -> None:
    manage(site, "migrate", "--noinput", log_name="migrate")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 60.0
) -> tuple[int, dict[str, str], bytes, float]:
    """One GET on a new connection: status, headers (lower-case names), body, seconds.

    The seconds run from the connect to the last byte of the body.
    """
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        seconds = time.perf_counter() - start
        headers_out = {k.lower(): v for k, v in response.getheaders()}
        return response.status, headers_out, body, seconds
    finally:
        conn.close()


def wait_http(port: int, path: str, *, timeout: float = 60.0, proc=None) -> None:
    """Poll until `path` answers 200 (each poll is a real request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering")
        try:
            if http_get(port, path, timeout=5)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"127.0.0.1:{port}{path} did not answer 200 within {timeout} s")


@contextmanager
def gunicorn(
    app: str, *, env: dict[str, str], workers: int = 2, ready_path: str, log_name: str = "gunicorn"
):
    """gunicorn `app` on a free 127.0.0.1 port; yields (port, seconds until ready_path is 200)."""
    port = free_port()
    log = OUT / "logs" / f"{log_name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(BIN / "gunicorn"),
        app,
        "--workers",
        str(workers),
        "--bind",
        f"127.0.0.1:{port}",
        "--log-level",
        "warning",
        "--timeout",
        "120",
    ]
    with log.open("w") as fh:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_http(port, ready_path, proc=proc)
            yield port, time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def server_env(site: Site) -> dict[str, str]:
    """The project served as in production, on development settings with DEBUG off."""
    return site.env(DEBUG="false", ALLOWED_HOSTS="127.0.0.1")


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def call_times(fn, runs: int) -> list[float]:
    """Wall seconds of `runs` calls of `fn()` (the caller warms it up first)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@dataclass(frozen=True)
class Config:
    """Sizes and durations of one run; `quick` is the smoke-test size."""

    quick: bool
    images: int = 200  # rows (and 1600×1200 images) of the import-to-ready benchmark
    latency: float = 0.05  # seconds before the image server answers
    workers: int = 16  # CARS_IMPORT_WORKERS
    bulk_rows: int = 100_000  # rows-without-images speed (vs sqlite-utils)
    big_rows: int = 1_000_000  # peak memory, and the deep-page table
    api_rows: int = 10_000  # the API table
    deep_offset: int = 9_900  # the deep page of the API table
    big_deep_offset: int = 990_000  # the deep page of the big table
    attempts: int = 2  # bulk imports and sqlite-utils: best of N (the machine is shared)
    wrk_seconds: int = 10
    wrk_rounds: int = 2  # the API URLs are measured in turn, best of N rounds
    render_runs: int = 7
    steady_requests: int = 20

    @classmethod
    def make(cls, quick: bool) -> "Config":
        if not quick:
            return cls(quick=False)
        return cls(
            quick=True,
            images=64,
            bulk_rows=20_000,
            big_rows=20_000,
            big_deep_offset=19_900,
            wrk_seconds=3,
            wrk_rounds=1,
            render_runs=3,
            attempts=1,
        )

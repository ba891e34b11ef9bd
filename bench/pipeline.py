"""The pipeline's shape: shared pictures, and one import shared by several workers.

- **Shared pictures:** 10k rows over 20 distinct 1600×1200 photos, each photo under 5
  URLs (rotated query strings, as signed CDN links do), against the work that cannot be
  avoided, measured in the same run: importing the 20 photos alone (20 rows) plus 10k
  rows with no image, each on a fresh site. Target ≤ 1.5×.
- **Horizontal scale:** 200 photos imported by Celery workers of `--concurrency 1`, each
  pinned to a core of its own with `taskset`: two such workers against one, same run,
  from the job's submission to its end. Target ≤ 0.6×. Needs Redis on 127.0.0.1:6379.
"""

import csv
import os
import random
import signal
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

from . import data
from .common import BIN, OUT, PYTHON, ROOT, Config, Site, import_csv, migrate
from .imageserver import ImageServer
from .report import Row, at_most, info, seconds

SHARED_ROWS = 10_000
DISTINCT = 20
URLS_PER_PICTURE = 5
SCALE_DB = 13  # the Redis database number the scale benchmark flushes and uses
last_shared: dict | None = None  # this run's shared-pictures figures (bench/feeds.py)


def run(cfg: Config) -> tuple[dict, list[Row]]:
    results, rows = {}, []
    shared, shared_rows = shared_pictures(cfg)
    results["shared_pictures"] = shared
    rows += shared_rows
    scale, scale_rows = horizontal_scale(cfg)
    results["horizontal_scale"] = scale
    rows += scale_rows
    return results, rows


# --- Shared pictures -------------------------------------------------------------------


def shared_pictures(cfg: Config) -> tuple[dict, list[Row]]:
    global last_shared
    count = SHARED_ROWS // 10 if cfg.quick else SHARED_ROWS
    images = data.import_images(DISTINCT)
    with ImageServer(images[0].parent, latency=cfg.latency) as server:
        ours_site = Site.fresh("shared-pictures")
        migrate(ours_site)
        ours_csv = _shared_csv(ours_site.folder, images, server.base_url, count)
        ours = _import(ours_site, ours_csv, cfg)

        alone_site = Site.fresh("pictures-alone")
        migrate(alone_site)
        alone_csv = data.images_csv(images, server.base_url, alone_site.folder)
        alone = _import(alone_site, alone_csv, cfg)
    bare_site = Site.fresh("bare-rows")
    migrate(bare_site)
    bare = _import(bare_site, data.rows_csv(count), cfg)

    files = sum(1 for p in ours_site.media.rglob("*") if p.is_file())
    reference = alone["seconds"] + bare["seconds"]
    ratio = ours["seconds"] / reference
    results = {
        "rows": count,
        "distinct_pictures": DISTINCT,
        "urls": DISTINCT * URLS_PER_PICTURE,
        "ours": ours,
        "pictures_alone": alone,
        "bare_rows": bare,
        "files_written": files,
        "ratio": ratio,
    }
    last_shared = results
    label = f"{count // 1000}k rows over {DISTINCT} pictures"
    return results, [
        at_most(
            label,
            seconds(ours["seconds"]),
            f"{seconds(alone['seconds'])} + {seconds(bare['seconds'])} (20 alone + bare rows)",
            ratio,
            1.5,
            note=f"{files} files; pictures {ours['pictures']}",
        )
    ]


def _shared_csv(folder: Path, images: list[Path], base_url: str, count: int) -> Path:
    path = folder / "shared.csv"
    rnd = random.Random(count)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "title", "description", "image"])
        for i in range(count):
            picture = images[i % DISTINCT].name
            variant = (i // DISTINCT) % URLS_PER_PICTURE
            url = f"{base_url}/{picture}?sig={variant}"
            writer.writerow([f"car-{i}", f"{rnd.choice(data.WORDS)} {i}", "", url])
    return path


def _import(site: Site, csv_path: Path, cfg: Config) -> dict:
    report_path = site.folder / f"{csv_path.stem}-report.json"
    timed, report = import_csv(
        site,
        csv_path,
        workers=cfg.workers,
        report_path=report_path,
        log_name=f"import-{csv_path.stem}",
    )
    return {
        "seconds": timed.seconds,
        "cpu_s": timed.cpu_seconds,
        "counts": report["counts"],
        "pictures": report.get("pictures"),
        "timings": report.get("timings") or {},
    }


# --- Horizontal scale ------------------------------------------------------------------


def horizontal_scale(cfg: Config) -> tuple[dict, list[Row]]:
    if not _redis_answers():
        reason = "Redis is not running on 127.0.0.1:6379"
        return {"skipped": reason}, [info("2 one-core workers vs 1", "skipped", note=reason)]
    cores = len(os.sched_getaffinity(0))
    images = data.import_images(cfg.images)
    timings = {}
    with ImageServer(images[0].parent, latency=cfg.latency) as server:
        for workers in (1, 2):
            site = Site.fresh(f"scale-{workers}")
            migrate(site)
            csv_path = data.images_csv(images, server.base_url, site.folder)
            timings[workers] = _queued_import(site, csv_path, workers, cores, cfg)
    ratio = timings[2]["seconds"] / timings[1]["seconds"]
    results = {"photos": cfg.images, "cores": cores, "one": timings[1], "two": timings[2]}
    return results, [
        at_most(
            f"{cfg.images} photos, 2 one-core workers",
            seconds(timings[2]["seconds"]),
            f"1 worker {seconds(timings[1]['seconds'])}",
            ratio,
            0.6,
            note=f"chunks per worker: {timings[2]['chunks']}",
        )
    ]


def _queued_import(site: Site, csv_path: Path, workers: int, cores: int, cfg: Config) -> dict:
    broker = f"redis://127.0.0.1:6379/{SCALE_DB}"
    _flush_redis(SCALE_DB)
    env = site.env(REDIS_URL=broker, CELERY_BROKER_URL=broker, CARS_IMPORT_WORKERS="16")
    with _workers(site, env, workers, cores) as logs:
        script = (
            "from imports.jobs import submit_job; from imports.lifecycle import create_job;"
            f"job = create_job(source={str(csv_path)!r}, trigger='api');"
            "submit_job(job); print(job.pk)"
        )
        started = time.perf_counter()
        job_id = _shell(env, script)
        status = _wait_for_job(env, job_id, timeout=600)
        elapsed = time.perf_counter() - started
    done = "Task imports.tasks.process_image_chunk"
    chunks = [log.read_text().count(done) // 2 for log in logs]  # "received" + "succeeded"
    return {"seconds": elapsed, "status": status, "chunks": chunks}


@contextmanager
def _workers(site: Site, env: dict[str, str], count: int, cores: int):
    logs, procs = [], []
    for n in range(count):
        log = OUT / "logs" / site.name / f"worker-{n}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        cmd = ["taskset", "-c", str(n % cores), str(BIN / "celery"), "-A", "config", "worker"]
        cmd += ["--concurrency=1", "--loglevel=INFO", "--without-gossip", "--without-mingle"]
        cmd += ["-n", f"bench{n}@%h"]
        with log.open("w") as fh:
            procs.append(
                subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
            )
        logs.append(log)
    try:
        deadline = time.monotonic() + 60
        while not all("ready" in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError("the Celery workers did not start")
            time.sleep(0.2)
        yield logs
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _shell(env: dict[str, str], script: str) -> str:
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def _wait_for_job(env: dict[str, str], job_id: str, *, timeout: float) -> str:
    import sqlite3

    db = env["DATABASE_URL"].removeprefix("sqlite:///")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db, timeout=20) as conn:
            (status,) = conn.execute(
                "SELECT status FROM imports_importjob WHERE id = ?", (int(job_id),)
            ).fetchone()
        if status in ("succeeded", "failed"):
            return status
        time.sleep(0.1)
    raise TimeoutError(f"import job {job_id} did not end within {timeout} s")


def _redis_answers() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _flush_redis(db: int) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", 6379), timeout=2) as sock:
        sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        sock.recv(64)

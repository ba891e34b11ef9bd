"""Import to ready: 200 rows with 200 1600×1200 images behind 50 ms of latency.

`manage.py import_csv` is timed on a fresh database and media folder, then gunicorn is
started and the first GET of /api/cars/web/ is timed. The floor is the larger of the
ideal download window (rows × latency ÷ fetch workers) and the unavoidable CPU work of
the renditions (bench/floors.py: one decode at the right DCT scale, the resizes and the
encodes of the configured platforms, × rows ÷ cores). The download phase is
`report.timings["fetch"]` when the import report has it, else the image server's own
window (first request arrived → last byte written).
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import httpx

from . import data, floors
from .common import Config, Site, gunicorn, http_get, import_csv, migrate, server_env
from .imageserver import ImageServer
from .report import Row, at_most, check, info, seconds

# The obvious build, measured once on this machine (FIELD-NOTES "Reference measurements"):
# import 12.4 s + first GET /api/cars/web/ 10.6 s. It cannot be re-run, so it is a constant,
# reported as information.
ANCHOR_S = 12.4 + 10.6
GOAL = 1.3  # import to ready, at most this multiple of the floor


def run(cfg: Config) -> tuple[dict, list[Row]]:
    images = data.import_images(cfg.images)
    site = Site.fresh("import-ready")
    migrate(site)
    report_path = site.folder / "report.json"
    with ImageServer(images[0].parent, latency=cfg.latency) as server:
        csv_path = data.images_csv(images, server.base_url, site.folder)
        server.reset()
        imported, report = import_csv(
            site, csv_path, workers=cfg.workers, report_path=report_path, log_name="import"
        )
        served = server.stats()
        server_window = server_floor(server, images, cfg.workers)
    counts = report["counts"]
    timings = report.get("timings") or {}

    # gunicorn right after the import; the first GET is the first this worker serves
    # (/healthz, the readiness probe, only proves it is up).
    with gunicorn(
        "config.wsgi", env=server_env(site), workers=1, ready_path="/healthz", log_name="ready"
    ) as (port, boot):
        status, _, body, first = http_get(port, "/api/cars/web/")
        page = json.loads(body) if status == 200 else []
        with_image = [item for item in page if item.get("image")]
        media_status = http_get(port, _path(with_image[0]["image"]))[0] if with_image else None

    cores = len(os.sched_getaffinity(0))
    picture = floors.picture_floor(images[0].read_bytes())
    cpu_floor_s = picture["cpu_s"] * cfg.images / cores
    ideal_s = cfg.images * cfg.latency / cfg.workers
    floor_s = max(ideal_s, cpu_floor_s)
    fetch_s = timings.get("fetch", served["window_s"])
    fetch_source = "report.timings" if "fetch" in timings else "image server"
    ready_s = imported.seconds + first
    anchor_s = ANCHOR_S * cfg.images / 200  # a quick run with fewer rows scales it
    results = {
        "rows": cfg.images,
        "latency_s": cfg.latency,
        "workers": cfg.workers,
        "cores": cores,
        "import_s": imported.seconds,
        "import_cpu_s": imported.cpu_seconds,
        "import_peak_rss_mb": imported.peak_rss_mb,
        "counts": counts,
        "timings": timings,
        "server": served,
        "fetch_s": fetch_s,
        "fetch_source": fetch_source,
        "ideal_fetch_s": ideal_s,
        "server_floor_s": server_window,
        "picture_floor": picture,
        "cpu_floor_s": cpu_floor_s,
        "floor_s": floor_s,
        "gunicorn_boot_s": boot,
        "first_get_s": first,
        "first_get_status": status,
        "ready_s": ready_s,
        "anchor_s": anchor_s,
        "first_page_items": len(page),
        "first_page_with_image": len(with_image),
        "rendition_fetch_status": media_status,
    }
    complete = (
        counts.get("images_ok") == cfg.images
        and status == 200
        and len(with_image) == len(page) > 0
        and media_status == 200
    )
    phases = ", ".join(f"{k} {seconds(v)}" for k, v in timings.items()) or "no report.timings"
    bound = "CPU" if cpu_floor_s >= ideal_s else "download"
    rows = [
        at_most(
            f"import to ready ({cfg.images} img, {cfg.latency * 1000:.0f} ms)",
            f"{seconds(imported.seconds)} + {seconds(first)}",
            f"{seconds(floor_s)} floor ({bound})",
            ready_s / floor_s,
            GOAL,
            note=f"{phases}; CPU {imported.cpu_seconds:.1f} s",
        ),
        info(
            "  CPU floor: renditions over the cores",
            seconds(cpu_floor_s),
            note=f"{cfg.images} × {seconds(picture['cpu_s'])} (decode "
            f"{seconds(picture['decode_s'])}, resizes "
            + "+".join(seconds(v) for v in picture["resize_s"].values())
            + ", encodes "
            + "+".join(seconds(v) for v in picture["encode_s"].values())
            + f") ÷ {cores} cores",
        ),
        info(
            "  vs the obvious build",
            seconds(ready_s),
            f"{seconds(anchor_s)} (FIELD-NOTES)",
            anchor_s / ready_s,
            note="speed-up; a constant measured once, the obvious build cannot be re-run",
        ),
        info(
            "  download phase vs rows×latency÷workers",
            seconds(fetch_s),
            seconds(ideal_s),
            fetch_s / ideal_s if fetch_s else None,
            note=f"from {fetch_source}; {served['requests']} image requests; a bare httpx "
            f"client gets {seconds(server_window)} from the same server",
        ),
        besides_rendering(timings, imported.cpu_seconds),
        check(
            "import complete, renditions served",
            f"{counts.get('images_ok')}/{cfg.images} images, page {len(with_image)}/{len(page)}",
            "all images, all renditions",
            complete,
        ),
        info(f"import peak RSS ({cfg.images} img)", f"{imported.peak_rss_mb:.0f} MB"),
    ]
    return results, rows


def besides_rendering(timings: dict, import_cpu_s: float) -> Row:
    """The importing process's own CPU in the image phase (report.timings["images_cpu"]):
    downloads, hashing, the batches' transactions and files, the pipes to the render
    processes; against the whole import's CPU, render processes included."""
    label = "  importing process besides rendering"
    if "images_cpu" not in timings:
        return info(label, "-", note="no report.timings['images_cpu']")
    cpu = timings["images_cpu"]
    return info(
        label,
        f"{seconds(cpu)} CPU",
        f"{seconds(import_cpu_s)} CPU in all",
        cpu / import_cpu_s if import_cpu_s else None,
        note=f"image phase {seconds(timings['images'])} wall, batches written "
        f"{seconds(timings.get('writes', 0))} wall (fetches go on meanwhile); the rest of "
        "the CPU: render processes, the row phase, start-up",
    )


def server_floor(server: ImageServer, images: list, workers: int) -> float:
    """Download every image with a bare pooled client: the window the harness allows."""
    with (
        httpx.Client(limits=httpx.Limits(max_connections=workers)) as client,
        ThreadPoolExecutor(workers) as pool,
    ):
        server.reset()
        list(pool.map(lambda p: client.get(f"{server.base_url}/{p.name}").content, images))
    return server.stats()["window_s"]


def _path(url: str) -> str:
    """The path of an absolute URL the API returned (served by the same gunicorn)."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]

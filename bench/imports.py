"""Import to ready: 200 rows with 200 1600×1200 images behind 50 ms of latency.

`manage.py import_csv` is timed on a fresh database and media folder, then gunicorn is
started and the first GET of /api/cars/web/ is timed, then a steady-state GET (median).
The download phase is `report.timings["fetch"]` when the import report has it, else the
image server's own window (first request arrived → last byte written).
"""

import json
import os
from concurrent.futures import ThreadPoolExecutor

import httpx

from . import data, references
from .common import Config, Site, gunicorn, http_get, manage, median, migrate, server_env
from .imageserver import ImageServer
from .report import Row, at_least, at_most, check, info, seconds

# The obvious build, measured once on this machine (FIELD-NOTES "Reference measurements"):
# import 12.4 s + first GET /api/cars/web/ 10.6 s. It cannot be re-run, so it is a constant.
ANCHOR_IMPORT_S = 12.4
ANCHOR_FIRST_GET_S = 10.6
ANCHOR_S = ANCHOR_IMPORT_S + ANCHOR_FIRST_GET_S


def run(cfg: Config) -> tuple[dict, list[Row]]:
    images = data.import_images(cfg.images)
    site = Site.fresh("import-ready")
    migrate(site)
    report_path = site.folder / "report.json"
    with ImageServer(images[0].parent, latency=cfg.latency) as server:
        csv_path = data.images_csv(images, server.base_url, site.folder)
        server.reset()
        imported = manage(
            site,
            "import_csv",
            str(csv_path),
            "--no-progress",
            "--report",
            str(report_path),
            log_name="import",
            CARS_IMPORT_WORKERS=str(cfg.workers),
        )
        served = server.stats()
        floor = server_floor(server, images, cfg.workers)
    report = json.loads(report_path.read_text())
    counts = report["counts"]
    timings = report.get("timings") or {}

    floor_render = render_floor(images, cfg.images)

    # gunicorn right after the import. One worker, so that the request timed first is the
    # first this process serves (/healthz, the readiness probe, only proves it is up).
    # gunicorn reads the project's gunicorn.conf.py, whose warm-up hook has sent the list
    # URLs through the worker before it accepts connections; `new_url` is a page it did
    # not warm (what the first request after an import costs while the server runs).
    with gunicorn(
        "config.wsgi", env=server_env(site), workers=1, ready_path="/healthz", log_name="ready"
    ) as (port, boot):
        status, _, body, first = http_get(port, "/api/cars/web/")
        steady_times = [http_get(port, "/api/cars/web/")[3] for _ in range(cfg.steady_requests)]
        new_url = median([http_get(port, f"/api/cars/web/?limit={n}")[3] for n in (97, 98, 99)])
        page = json.loads(body) if status == 200 else []
        with_image = [item for item in page if item.get("image")]
        media_status = http_get(port, _path(with_image[0]["image"]))[0] if with_image else None
    steady = median(steady_times)

    fetch_s = timings.get("fetch", served["window_s"])
    fetch_source = "report.timings" if "fetch" in timings else "image server"
    ideal_s = cfg.images * cfg.latency / cfg.workers
    ready_s = imported.seconds + first
    # The anchor is for 200 rows; a quick run with fewer scales it (a rough figure).
    anchor_s = ANCHOR_S * cfg.images / 200
    results = {
        "rows": cfg.images,
        "latency_s": cfg.latency,
        "workers": cfg.workers,
        "import_s": imported.seconds,
        "import_cpu_s": imported.cpu_seconds,
        "import_peak_rss_mb": imported.peak_rss_mb,
        "counts": counts,
        "timings": timings,
        "server": served,
        "fetch_s": fetch_s,
        "fetch_source": fetch_source,
        "ideal_fetch_s": ideal_s,
        "server_floor_s": floor,
        "render_floor": floor_render,
        "gunicorn_boot_s": boot,
        "first_get_s": first,
        "first_get_status": status,
        "steady_get_s": steady,
        "new_url_get_s": new_url,
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
    rows = [
        at_least(
            f"import to ready ({cfg.images} img, {cfg.latency * 1000:.0f} ms)",
            f"{seconds(imported.seconds)} + {seconds(first)}",
            f"{ANCHOR_IMPORT_S} s + {ANCHOR_FIRST_GET_S} s"
            if cfg.images == 200
            else f"{anchor_s:.1f} s (scaled)",
            anchor_s / ready_s,
            9,
            note=f"anchor: FIELD-NOTES; {phases}; CPU {imported.cpu_seconds:.1f} s",
        ),
        at_most(
            "download phase vs rows×latency÷workers",
            seconds(fetch_s),
            seconds(ideal_s),
            fetch_s / ideal_s if fetch_s else None,
            1.3,
            note=f"from {fetch_source}; {served['requests']} image requests",
        ),
        check(
            "import complete, renditions served",
            f"{counts.get('images_ok')}/{cfg.images} images, page {len(with_image)}/{len(page)}",
            "all images, all renditions",
            complete,
        ),
        at_most(
            "first request after import, fresh server",
            seconds(first),
            seconds(steady),
            first / steady,
            2,
            note=f"median of {cfg.steady_requests}; gunicorn ready in {seconds(boot)}"
            " (the worker warm-up filled this page)",
        ),
        at_most(
            "first request after import, server running",
            seconds(new_url),
            seconds(steady),
            new_url / steady,
            2,
            note="a page the warm-up did not fill (limit=97/98/99, median): what every "
            "page costs once after an import lands on a running server",
        ),
        info(
            "  image server floor (plain httpx client)",
            seconds(floor),
            seconds(ideal_s),
            floor / ideal_s,
            note=f"{cfg.workers} threads, one pooled client: what the server allows",
        ),
        info(
            "  rendering floor (fastest reference, all cores)",
            seconds(floor_render["seconds"]),
            note=f"{cfg.images} × {seconds(floor_render['per_image_s'])} "
            f"({floor_render['renderer']}, web+mobile) ÷ {floor_render['cpus']} cores",
        ),
        info(f"import peak RSS ({cfg.images} img)", f"{imported.peak_rss_mb:.0f} MB"),
    ]
    return results, rows


def server_floor(server: ImageServer, images: list, workers: int) -> float:
    """Download every image with a bare pooled client: the window the harness allows."""
    with (
        httpx.Client(limits=httpx.Limits(max_connections=workers)) as client,
        ThreadPoolExecutor(workers) as pool,
    ):
        server.reset()
        list(pool.map(lambda p: client.get(f"{server.base_url}/{p.name}").content, images))
    return server.stats()["window_s"]


def render_floor(images: list, rows: int) -> dict:
    """What rendering alone costs at best, spread over every core.

    The faster reference (web + mobile of a 1600×1200 JPEG) times the rows, divided by
    the cores; the import's renditions add the `default` platform on top.
    """
    renderers = {"Pillow draft": references.pillow_draft}
    if not references.pyvips_missing():
        renderers["pyvips"] = references.pyvips_thumbnail
    timed = {
        name: min(references.time_renderer(fn, p.read_bytes(), 3)["median_s"] for p in images[:3])
        for name, fn in renderers.items()
    }
    name = min(timed, key=timed.get)
    cpus = os.cpu_count() or 1
    return {
        "renderer": name,
        "per_image_s": timed[name],
        "per_image_by_renderer_s": timed,
        "cpus": cpus,
        "seconds": timed[name] * rows / cpus,
    }


def _path(url: str) -> str:
    """The path of an absolute URL the API returned (served by the same gunicorn)."""
    return "/" + url.split("://", 1)[-1].split("/", 1)[-1]

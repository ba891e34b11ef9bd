"""Renditions of a 4000×3000 JPEG: `cars.renditions.render_all` against Pillow/pyvips.

Ours runs in a child process set up like the project (django.setup() on a fresh bench
database and MEDIA_ROOT): the 4000×3000 JPEG, named by content as a picture's original is,
rendered for every platform and the renditions written to the storage (as
`cars.pictures.store_picture` writes them), median of N after a warm-up. The references
(web 1280×960 q85 + mobile 640×480 q80 from the same JPEG) run in this process. Then the
outputs are checked: dimensions, EXIF rotation (a red marker painted in the stored top-left
corner of a sideways photo must end up top-right), progressive, no metadata, web size within
15% of Pillow's.
"""

import json
import os
import sys

from PIL import Image

from . import data, floors, references
from .common import PYTHON, Config, Site, median, migrate, run_timed
from .report import Row, at_most, check, info, seconds, within

SIZE_TOLERANCE = 0.15


def run(cfg: Config) -> tuple[dict, list[Row]]:
    images = data.big_images()
    site = Site.fresh("renditions")
    migrate(site)
    child = run_timed(
        [PYTHON, "-m", "bench.renditions", str(cfg.render_runs), *map(str, images.values())],
        env=site.env(),
        log=site.folder / "worker",
    )
    if child.returncode != 0:
        raise RuntimeError(f"rendition worker failed:\n{child.stderr[-3000:]}")
    ours = json.loads(child.stdout.strip().splitlines()[-1])
    upright, sideways = ours["upright"], ours["sideways"]

    source = images["upright"].read_bytes()
    pillow = references.time_renderer(references.pillow_draft, source, cfg.render_runs)
    missing = references.pyvips_missing()
    vips = None
    candidates = {"Pillow draft": pillow["median_s"]}
    if not missing:
        vips = references.time_renderer(references.pyvips_thumbnail, source, cfg.render_runs)
        candidates["pyvips"] = vips["median_s"]
    best_name = min(candidates, key=candidates.get)
    best = candidates[best_name]
    codec = floors.codec_floor(source, cfg.render_runs)
    cpus = os.cpu_count() or 1
    codec_wall = floors.wall_floor(codec, cpus, resizes=False)
    pillow_wall = floors.wall_floor(codec, cpus, resizes=True)

    fits = {name: _fit_box(spec) for name, spec in ours["platforms"].items()}
    described = {
        label: {p: _describe(site.media / r["name"]) for p, r in result["renditions"].items()}
        for label, result in (("upright", upright), ("sideways", sideways))
    }
    problems = _problems(described, fits)
    web_bytes = described["upright"].get("web", {}).get("bytes")
    pillow_web = pillow["bytes"]["web"]

    results = {
        "ours": {
            "median_s": upright["median_s"],
            "times_s": upright["times_s"],
            "sideways_s": sideways["median_s"],
            "platforms": ours["platforms"],
            "outputs": described,
        },
        "pillow_draft": {k: v for k, v in pillow.items() if k != "outputs"},
        "pyvips": {k: v for k, v in vips.items() if k != "outputs"} if vips else missing,
        "reference": best_name,
        "codec_floor": {**codec, "wall_s": codec_wall, "pillow_wall_s": pillow_wall, "cpus": cpus},
        "problems": problems,
    }
    platforms = "+".join(ours["platforms"])
    rows = [
        at_most(
            f"renditions 4000×3000 ({platforms})",
            seconds(upright["median_s"]),
            f"{seconds(best)} {best_name}",
            upright["median_s"] / best,
            1,
            note=f"median of {cfg.render_runs}; reference makes web+mobile only",
        ),
        info("  Pillow draft (web+mobile)", seconds(pillow["median_s"])),
        info("  pyvips thumbnail (web+mobile)", seconds(vips["median_s"]) if vips else missing),
        info(
            f"  floor: decode + {platforms} encodes",
            seconds(codec_wall),
            f"{seconds(best)} {best_name}",
            codec_wall / best,
            note=f"decode {seconds(codec['decode_s'])}, encodes "
            + "+".join(seconds(v) for v in codec["encode_s"].values())
            + f", no resize, {cpus} cores at best (bench/floors.py)",
        ),
        info(
            "  floor with Pillow's Lanczos resizes",
            seconds(pillow_wall),
            f"{seconds(best)} {best_name}",
            pillow_wall / best,
            note="resizes "
            + "+".join(seconds(v) for v in codec["resize_s"].values())
            + ": above 1, no Pillow pipeline meets the target",
        ),
        check(
            "rendition quality (dims, EXIF, progressive)",
            "ok" if not problems else f"{len(problems)} problem(s)",
            "fit boxes, rotated, progressive, stripped",
            not problems,
            note="; ".join(problems[:3]),
        ),
        within(
            "web rendition bytes vs Pillow",
            f"{web_bytes / 1000:.0f} KB" if web_bytes else "n/a",
            f"{pillow_web / 1000:.0f} KB",
            web_bytes / pillow_web if web_bytes else None,
            SIZE_TOLERANCE,
        ),
    ]
    return results, rows


def _fit_box(processors: list) -> tuple[int, int] | None:
    """The box of a platform made of one `fit` processor (the defaults); else None."""
    if len(processors) == 1 and processors[0][0] == "fit":
        return int(processors[0][1]), int(processors[0][2])
    return None


def _describe(path) -> dict:
    with Image.open(path) as img:
        desc = {
            "size": list(img.size),
            "format": img.format,
            "mode": img.mode,
            "progressive": bool(img.info.get("progressive") or img.info.get("progression")),
            "exif": bool(img.info.get("exif")),
            "bytes": path.stat().st_size,
        }
        rgb = img.convert("RGB")
        w = rgb.size[0]
        corner = max(2, w // 40)
        desc["top_left"] = _mean(rgb.crop((0, 0, corner, corner)))
        desc["top_right"] = _mean(rgb.crop((w - corner, 0, w, corner)))
    return desc


def _mean(img: Image.Image) -> list[int]:
    pixels = list(img.getdata())
    return [round(sum(p[i] for p in pixels) / len(pixels)) for i in range(3)]


def _is_red(rgb: list[int]) -> bool:
    return rgb[0] > 200 and rgb[1] < 60 and rgb[2] < 60


def _problems(described: dict, fits: dict) -> list[str]:
    problems = []
    sources = {"upright": (4000, 3000), "sideways": (3000, 4000)}  # as displayed
    for label, outputs in described.items():
        for platform, desc in outputs.items():
            where = f"{label}/{platform}"
            box = fits.get(platform)
            if box and tuple(desc["size"]) != floors.fit(sources[label], box):
                problems.append(f"{where} is {desc['size']}, not {floors.fit(sources[label], box)}")
            if desc["format"] != "JPEG" or not desc["progressive"]:
                problems.append(f"{where} is not a progressive JPEG")
            if desc["exif"]:
                problems.append(f"{where} keeps EXIF metadata")
            if label == "sideways" and not (
                _is_red(desc["top_right"]) and not _is_red(desc["top_left"])
            ):
                problems.append(f"{where} is not rotated by its EXIF orientation")
    return problems


def _worker(runs: int, paths: list[str]) -> dict:
    """In the child: render each image `runs` times (after a warm-up) with render_all."""
    import time
    from pathlib import Path

    import django

    django.setup()
    import hashlib

    from django.conf import settings

    from cars.pictures import _write, picture_name
    from cars.renditions import render_all

    out: dict = {
        "platforms": {name: spec["processors"] for name, spec in settings.CARS_PLATFORMS.items()}
    }
    for label, path in zip(("upright", "sideways"), map(Path, paths), strict=True):
        source = path.read_bytes()
        name = picture_name(hashlib.sha256(source).hexdigest(), path.suffix)
        times = []
        for attempt in range(runs + 1):
            start = time.perf_counter()
            renditions = render_all(name, source)
            for rendition in renditions.values():
                _write(rendition.name, rendition.data)
            if attempt:  # the first call is the warm-up
                times.append(time.perf_counter() - start)
        stored = {platform: r.stored() for platform, r in renditions.items()}
        out[label] = {"median_s": median(times), "times_s": times, "renditions": stored}
    return out


if __name__ == "__main__":
    print(json.dumps(_worker(int(sys.argv[1]), sys.argv[2:])))

"""Renditions per picture: what the import does with a new picture's bytes, against pyvips.

Ours runs in a child process set up like the project (django.setup() on a fresh bench
database and MEDIA_ROOT): `imports.pictures.pipeline.check_and_render` (the check that
the bytes are a whole image, riding on the one decode, and every platform's rendition),
median of N after a warm-up, for a 4000×3000 and a 1600×1200 JPEG. The reference, in
this process, makes the same three renditions with pyvips (shrink-on-load, the same JPEG
settings). Then quality: each rendition against the whole picture decoded, Lanczos-resized
and encoded with the same settings (PSNR and bytes); dimensions, EXIF rotation (a red
marker painted in the stored top-left corner of a sideways photo must end up top-right),
progressive as the platform says, no metadata.
"""

import io
import json
import math
import os
import sys

from PIL import Image, ImageChops, ImageStat

from . import data, floors, references
from .common import PYTHON, Config, Site, median, migrate, run_timed
from .report import Row, at_least, at_most, check, info, seconds, within

MIN_PSNR_DB = 40
BYTES_TOLERANCE = 0.05


def run(cfg: Config) -> tuple[dict, list[Row]]:
    images = {**data.big_images(), "1600x1200": data.import_images(1)[0]}
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
    cores = len(os.sched_getaffinity(0))
    missing = references.pyvips_missing()
    results: dict = {"platforms_match": ours["platforms_match"], "cores": cores}
    rows: list[Row] = []
    for label, size in (("upright", "4000×3000"), ("1600x1200", "1600×1200")):
        source = images[label].read_bytes()
        mine = ours[label]
        floor = floors.picture_floor(source, cfg.render_runs)
        floor_wall = floors.wall(floor, cores)
        vips = (
            None
            if missing
            else references.time_renderer(references.pyvips_renditions, source, cfg.render_runs)
        )
        results[label] = {
            "ours": mine,
            "pyvips": {k: v for k, v in vips.items() if k != "outputs"} if vips else missing,
            "floor": {**floor, "wall_s": floor_wall},
        }
        rows.append(
            at_most(
                f"renditions per picture {size}",
                seconds(mine["median_s"]),
                f"{seconds(vips['median_s'])} pyvips" if vips else missing,
                mine["median_s"] / vips["median_s"] if vips else None,
                1,
                note=f"check + 3 renditions, median of {cfg.render_runs}; pyvips makes the same"
                " 3 with the same settings",
            )
        )
        rows.append(
            info(
                "  vs the floor: decode + resizes + encodes",
                seconds(mine["median_s"]),
                seconds(floor_wall),
                mine["median_s"] / floor_wall,
                note=f"decode {seconds(floor['decode_s'])}, resizes "
                + "+".join(seconds(v) for v in floor["resize_s"].values())
                + ", encodes "
                + "+".join(seconds(v) for v in floor["encode_s"].values())
                + f", over {cores} cores at best (bench/floors.py)",
            )
        )
        rows.extend(_quality_rows(site, size, source, mine["renditions"], results[label]))
    described = {
        label: {p: _describe(site.media / r["name"]) for p, r in ours[label]["renditions"].items()}
        for label in ("upright", "sideways")
    }
    problems = _problems(described)
    if not ours["platforms_match"]:
        problems.insert(0, "CARS_PLATFORMS differs from the references' platforms")
    results["problems"] = problems
    rows.append(
        check(
            "rendition checks (dims, EXIF, progressive)",
            "ok" if not problems else f"{len(problems)} problem(s)",
            "fit boxes, rotated, as each platform says, stripped",
            not problems,
            note="; ".join(problems[:3]),
        )
    )
    return results, rows


def _quality_rows(site: Site, size: str, source: bytes, made: dict, results: dict) -> list[Row]:
    """The worst PSNR and bytes ratio over the platforms, against the full-decode
    Lanczos reference encoded with the same settings."""
    reference = references.full_decode_lanczos(source)
    psnrs, ratios = {}, {}
    for name, rendition in made.items():
        ours_bytes = (site.media / rendition["name"]).read_bytes()
        with Image.open(io.BytesIO(ours_bytes)) as a, Image.open(io.BytesIO(reference[name])) as b:
            psnrs[name] = _psnr(a, b)
        ratios[name] = len(ours_bytes) / len(reference[name])
    results["quality"] = {"psnr_db": psnrs, "bytes_ratio": ratios}
    worst_psnr = min(psnrs, key=psnrs.get)
    worst_bytes = max(ratios, key=lambda n: abs(ratios[n] - 1))
    listed = ", ".join(f"{n} {v:.1f}" for n, v in psnrs.items())
    return [
        at_least(
            f"  PSNR vs full decode + Lanczos ({size})",
            f"{psnrs[worst_psnr]:.1f} dB ({worst_psnr})",
            f"{MIN_PSNR_DB} dB",
            psnrs[worst_psnr] / MIN_PSNR_DB,
            1,
            note=f"dB: {listed}",
        ),
        within(
            f"  bytes vs the same reference ({size})",
            f"{ratios[worst_bytes]:.3f} ({worst_bytes})",
            "its bytes",
            ratios[worst_bytes],
            BYTES_TOLERANCE,
            note=", ".join(f"{n} {v:.3f}" for n, v in ratios.items()),
        ),
    ]


def _psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3
    return math.inf if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def _describe(path) -> dict:
    with Image.open(path) as img:
        desc = {
            "size": list(img.size),
            "format": img.format,
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
    return [round(v) for v in ImageStat.Stat(img).mean]


def _is_red(rgb: list[int]) -> bool:
    return rgb[0] > 200 and rgb[1] < 60 and rgb[2] < 60


def _problems(described: dict) -> list[str]:
    problems = []
    sources = {"upright": (4000, 3000), "sideways": (3000, 4000)}  # as displayed
    for label, outputs in described.items():
        for platform in references.PLATFORMS:
            desc = outputs[platform.name]
            where = f"{label}/{platform.name}"
            want = references.fit(sources[label], platform.box)
            if tuple(desc["size"]) != want:
                problems.append(f"{where} is {desc['size']}, not {want}")
            if desc["format"] != "JPEG" or desc["progressive"] != platform.progressive:
                problems.append(f"{where} is not a JPEG with progressive={platform.progressive}")
            if desc["exif"]:
                problems.append(f"{where} keeps EXIF metadata")
            if label == "sideways" and not (
                _is_red(desc["top_right"]) and not _is_red(desc["top_left"])
            ):
                problems.append(f"{where} is not rotated by its EXIF orientation")
    return problems


def _worker(runs: int, paths: list[str]) -> dict:
    """In the child: `check_and_render` on each image `runs` times (after a warm-up); the
    last renditions are written to the storage for the checks."""
    import hashlib
    import time
    from pathlib import Path

    import django

    django.setup()
    from django.conf import settings

    from cars.pictures.store import _write
    from imports.pictures.pipeline import check_and_render

    expected = {p.name: p.spec() for p in references.PLATFORMS}
    out: dict = {"platforms_match": expected == settings.CARS_PLATFORMS}
    for label, path in zip(("upright", "sideways", "1600x1200"), map(Path, paths), strict=True):
        source = path.read_bytes()
        sha256 = hashlib.sha256(source).hexdigest()
        times = []
        for attempt in range(runs + 1):
            start = time.perf_counter()
            new = check_and_render(sha256, source)
            if attempt:  # the first call is the warm-up
                times.append(time.perf_counter() - start)
        for rendition in new.renditions.values():
            _write(rendition.name, rendition.data)
        stored = {platform: r.stored() for platform, r in new.renditions.items()}
        out[label] = {"median_s": median(times), "times_s": times, "renditions": stored}
    return out


if __name__ == "__main__":
    print(json.dumps(_worker(int(sys.argv[1]), sys.argv[2:])))

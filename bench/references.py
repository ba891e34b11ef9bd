"""Reference figures measured in the same run: sqlite-utils, pyvips, a full-decode Pillow.

The minimal Django view (the API reference) lives in bench/minimal/ and is driven by
bench/api.py.
"""

import io
import os
from dataclasses import dataclass

from PIL import Image, ImageOps

from .common import BIN, OUT, call_times, median, run_timed


@dataclass(frozen=True)
class Platform:
    """A built-in platform (SPEC §5, config/settings/base.py): a `fit` and its JPEG."""

    name: str
    box: tuple[int, int]
    quality: int
    progressive: bool
    optimize: bool = False

    def spec(self) -> dict:
        """As CARS_PLATFORMS writes it (the renditions child checks they are the same)."""
        return {
            "processors": [["fit", *self.box]],
            "format": "JPEG",
            "quality": self.quality,
            "progressive": self.progressive,
        }


# Largest first.
PLATFORMS = (
    Platform("default", (1920, 1920), 90, True),
    Platform("web", (1280, 960), 85, True),
    Platform("mobile", (640, 480), 80, False),
)
_SIDEWAYS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`fit`: keep the aspect ratio, never upscale."""
    scale = min(box[0] / size[0], box[1] / size[1], 1)
    return round(size[0] * scale), round(size[1] * scale)


def encode(img: Image.Image, platform: Platform) -> bytes:
    """Pillow's JPEG (libjpeg-turbo) with the platform's settings."""
    buf = io.BytesIO()
    img.save(
        buf,
        "JPEG",
        quality=platform.quality,
        progressive=platform.progressive,
        optimize=platform.optimize,
    )
    return buf.getvalue()


# The search index our import keeps (cars migration 0002): FTS5 on title and description.
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


def sqlite_utils_insert(csv_path, *, fts: bool = False) -> dict:
    """`sqlite-utils insert db cars file.csv --csv` into a fresh database file; with `fts`,
    then `sqlite-utils enable-fts db cars title description` with our tokenizer and its
    triggers: the same search index our import keeps, so the same work. Times (and CPU)
    are the sum of both commands; peak RSS the larger."""
    db = OUT / "sites" / "sqlite-utils.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    tool = str(BIN / "sqlite-utils")
    steps = [[tool, "insert", str(db), "cars", str(csv_path), "--csv"]]
    if fts:
        options = ["--fts5", "--tokenize", FTS_TOKENIZE, "--create-triggers"]
        steps.append([tool, "enable-fts", str(db), "cars", "title", "description", *options])
    timed = []
    for step in steps:
        timed.append(run_timed(step, env=dict(os.environ), log=OUT / "logs" / "sqlite-utils"))
        if timed[-1].returncode != 0:
            raise RuntimeError(f"sqlite-utils failed: {timed[-1].stderr[-2000:]}")
    rows = sum(1 for _ in csv_path.open("rb")) - 1  # no quoted newlines in generated CSVs
    seconds = sum(t.seconds for t in timed)
    return {
        "rows": rows,
        "seconds": seconds,
        "cpu_seconds": sum(t.cpu_seconds for t in timed),
        "rows_per_s": rows / seconds,
        "peak_rss_mb": max(t.peak_rss_mb for t in timed),
        "steps_s": [t.seconds for t in timed],
    }


def full_decode_lanczos(data: bytes) -> dict[str, bytes]:
    """The quality reference: the whole picture decoded, each rendition resized from it
    with Lanczos and encoded with its platform's settings."""
    img = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
    out = {}
    for p in PLATFORMS:
        size = fit(img.size, p.box)
        out[p.name] = encode(img if size == img.size else img.resize(size, Image.LANCZOS), p)
    return out


def pyvips_missing() -> str | None:
    """None when pyvips works, else why not."""
    try:
        import pyvips  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libvips itself is missing
        return f"pyvips unavailable: {exc}"
    return None


def pyvips_renditions(data: bytes) -> dict[str, bytes]:
    """The three renditions with pyvips: a shrink-on-load `thumbnail` (auto-rotated) for
    the largest, each next one from the previous, libvips's JPEG encoder with the same
    settings. Of the variants tried (a `thumbnail_buffer` per rendition, or this chain),
    this is the fastest."""
    import pyvips

    out, previous = {}, None
    for p in PLATFORMS:
        w, h = p.box
        if previous is None:
            img = pyvips.Image.thumbnail_buffer(data, w, height=h, size="down")
        else:
            img = previous.thumbnail_image(w, height=h, size="down")
        previous = img.copy_memory()
        out[p.name] = previous.jpegsave_buffer(
            Q=p.quality,
            interlace=p.progressive,
            optimize_coding=p.optimize,
            keep=pyvips.enums.ForeignKeep.NONE,
        )
    return out


def time_renderer(render, data: bytes, runs: int) -> dict:
    """Median wall time of `render(data)` over `runs` calls, after one warm-up call."""
    outputs = render(data)
    times = call_times(lambda: render(data), runs)
    return {
        "median_s": median(times),
        "times_s": times,
        "bytes": {name: len(made) for name, made in outputs.items()},
        "outputs": outputs,
    }

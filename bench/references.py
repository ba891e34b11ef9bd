"""Reference figures measured in the same run: sqlite-utils, Pillow draft, pyvips.

The minimal Django view (the API reference) lives in bench/minimal/ and is driven by
bench/api.py.
"""

import io
import os

from PIL import Image, ImageOps

from .common import BIN, OUT, call_times, median, run_timed

# Fit box and JPEG quality of the built-in platforms (config/settings/base.py).
DEFAULT = (1920, 1920, 90)
WEB = (1280, 960, 85)
MOBILE = (640, 480, 80)
_SIDEWAYS = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def sqlite_utils_insert(csv_path) -> dict:
    """`sqlite-utils insert db cars file.csv --csv` into a fresh database file."""
    db = OUT / "sites" / "sqlite-utils.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)
    cmd = [str(BIN / "sqlite-utils"), "insert", str(db), "cars", str(csv_path), "--csv"]
    timed = run_timed(cmd, env=dict(os.environ), log=OUT / "logs" / "sqlite-utils")
    if timed.returncode != 0:
        raise RuntimeError(f"sqlite-utils failed: {timed.stderr[-2000:]}")
    rows = sum(1 for _ in csv_path.open("rb")) - 1  # no quoted newlines in generated CSVs
    return {
        "rows": rows,
        "seconds": timed.seconds,
        "cpu_seconds": timed.cpu_seconds,
        "rows_per_s": rows / timed.seconds,
        "peak_rss_mb": timed.peak_rss_mb,
    }


def pillow_draft(data: bytes) -> tuple[bytes, bytes]:
    """Web + mobile from one JPEG: DCT-scaled decode (`draft`), EXIF rotation, Lanczos."""
    img = Image.open(io.BytesIO(data))
    box = WEB[:2]
    if img.getexif().get(0x0112) in _SIDEWAYS:
        box = box[::-1]
    img.draft("RGB", box)
    img = ImageOps.exif_transpose(img)
    web = img.copy()
    web.thumbnail(WEB[:2], Image.Resampling.LANCZOS)
    mobile = web.copy()
    mobile.thumbnail(MOBILE[:2], Image.Resampling.LANCZOS)
    return _jpeg(web, WEB[2]), _jpeg(mobile, MOBILE[2])


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, progressive=True, optimize=True)
    return buf.getvalue()


def pyvips_missing() -> str | None:
    """None when pyvips works, else why not."""
    try:
        import pyvips  # noqa: F401
    except Exception as exc:  # ImportError, or OSError when libvips itself is missing
        return f"pyvips unavailable: {exc}"
    return None


def pyvips_thumbnail(data: bytes) -> tuple[bytes, bytes]:
    """Web + mobile from one JPEG: shrink-on-load thumbnail (auto-rotates), mobile from web.

    Of the variants tried (two `thumbnail_buffer` calls, or this one), this is the fastest.
    """
    import pyvips

    keep = {"keep": pyvips.enums.ForeignKeep.NONE}
    web = pyvips.Image.thumbnail_buffer(data, WEB[0], height=WEB[1]).copy_memory()
    mobile = web.thumbnail_image(MOBILE[0], height=MOBILE[1])
    return (
        web.jpegsave_buffer(Q=WEB[2], interlace=True, **keep),
        mobile.jpegsave_buffer(Q=MOBILE[2], interlace=True, **keep),
    )


def time_renderer(render, data: bytes, runs: int) -> dict:
    """Median wall time of `render(data)` over `runs` calls, after one warm-up call."""
    outputs = render(data)
    times = call_times(lambda: render(data), runs)
    return {
        "median_s": median(times),
        "times_s": times,
        "bytes": {"web": len(outputs[0]), "mobile": len(outputs[1])},
        "outputs": outputs,
    }

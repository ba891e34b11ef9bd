"""Floors: what this machine's JPEG codec and cores allow, measured in the same run.

A target below its floor cannot be met by any renderer built on the codec here, so the
table says so instead of leaving a miss unexplained. The codec is libjpeg-turbo, which
Pillow bundles (OpenCV bundles the same and encodes a progressive 1920×1440 in the same
time; pyvips-binary's encoder is about twice as slow here).

`codec_floor()` times, for one JPEG and the built-in platforms (SPEC §5):

- the one decode every pipeline needs, at the smallest DCT scale that still covers the
  largest rendition (`draft`);
- the progressive encode of each rendition, from pixels already at its size;
- the same encodes as baseline JPEGs, to show what progressive costs;
- Pillow's Lanczos resize of the decoded picture to each size (none, so ~0, where the
  decoded picture already has it).

No colour work, no EXIF, no storage and no Python around them: the parts left are the
ones no pipeline can skip while SPEC §5 asks for three progressive JPEGs.
"""

import io

from PIL import Image

from .common import call_times, median
from .references import DEFAULT, MOBILE, WEB

PLATFORMS = {"default": DEFAULT, "web": WEB, "mobile": MOBILE}


def fit(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """`fit`: keep the aspect ratio, never upscale."""
    scale = min(box[0] / size[0], box[1] / size[1], 1)
    return round(size[0] * scale), round(size[1] * scale)


def codec_floor(data: bytes, runs: int = 5) -> dict:
    """Median seconds of each step for `data` (an upright JPEG), and the sums that bound
    a whole rendering: `cpu_s` (decode + progressive encodes), `baseline_cpu_s`,
    `pillow_cpu_s` (+ Lanczos resizes), `encode_max_s` and `resize_encode_max_s` (the
    longest single rendition, which one core must do alone)."""
    with Image.open(io.BytesIO(data)) as probe:
        size = probe.size
    outputs = {name: fit(size, spec[:2]) for name, spec in PLATFORMS.items()}
    largest = max(outputs.values(), key=lambda s: s[0] * s[1])

    def decode() -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", largest)
        img.load()
        return img

    decoded = decode()

    def resize(name: str) -> Image.Image:
        out = outputs[name]
        return decoded if out == decoded.size else decoded.resize(out, Image.Resampling.LANCZOS)

    sized = {name: resize(name) for name in PLATFORMS}

    def encode(name: str, progressive: bool) -> bytes:
        buf = io.BytesIO()
        sized[name].save(buf, "JPEG", quality=PLATFORMS[name][2], progressive=progressive)
        return buf.getvalue()

    decode_s = _timed(decode, runs)
    encode_s = {name: _timed(lambda n=name: encode(n, True), runs) for name in PLATFORMS}
    baseline_s = {name: _timed(lambda n=name: encode(n, False), runs) for name in PLATFORMS}
    resize_s = {name: _timed(lambda n=name: resize(n), runs) for name in PLATFORMS}
    return {
        "size": list(size),
        "decoded_size": list(decoded.size),
        "outputs": {name: list(out) for name, out in outputs.items()},
        "decode_s": decode_s,
        "encode_s": encode_s,
        "baseline_encode_s": baseline_s,
        "resize_s": resize_s,
        "cpu_s": decode_s + sum(encode_s.values()),
        "baseline_cpu_s": decode_s + sum(baseline_s.values()),
        "pillow_cpu_s": decode_s + sum(encode_s.values()) + sum(resize_s.values()),
        "encode_max_s": max(encode_s.values()),
        "resize_encode_max_s": max(resize_s[n] + encode_s[n] for n in PLATFORMS),
    }


def wall_floor(floor: dict, cores: int, *, resizes: bool) -> float:
    """The least wall time of one rendering on `cores` cores.

    The decode is one stream (no core can help another with it); after it, the work
    spreads over the cores at best, but the longest rendition stays on one core.
    """
    work = floor["pillow_cpu_s"] if resizes else floor["cpu_s"]
    longest = floor["resize_encode_max_s"] if resizes else floor["encode_max_s"]
    after_decode = work - floor["decode_s"]
    return floor["decode_s"] + max(longest, after_decode / cores)


def _timed(fn, runs: int) -> float:
    fn()  # warm-up
    return median(call_times(fn, runs))

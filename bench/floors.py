"""Floors: the least work one picture's renditions need on this machine, measured in the
same run.

`picture_floor()` times, for one JPEG and the configured platforms (`references.PLATFORMS`,
the SPEC §5 defaults), each step no pipeline can skip:

- one decode at the smallest DCT scale that covers the largest rendition (`draft`);
- the Lanczos resizes, each rendition from the next larger one;
- the encodes, with each platform's JPEG settings.

No colour work, no EXIF, no checks, no storage and no Python around them. A target below
its floor cannot be met by any renderer built on this codec, so the table says so.
"""

import io

from PIL import Image

from .common import call_times, median
from .references import PLATFORMS, encode, fit


def picture_floor(data: bytes, runs: int = 5) -> dict:
    """Median seconds of each step for `data` (an upright JPEG), and `cpu_s`, their sum
    (what one core spends; `wall` spreads it over the cores)."""
    with Image.open(io.BytesIO(data)) as probe:
        size = probe.size
    outputs = {p.name: fit(size, p.box) for p in PLATFORMS}
    largest = max(outputs.values(), key=lambda s: s[0] * s[1])

    def decode() -> Image.Image:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", largest)
        img.load()
        return img

    sources, made = {}, {}
    previous = decode()
    for p in PLATFORMS:  # largest first: each from the previous one
        sources[p.name] = previous
        made[p.name] = previous = _resized(previous, outputs[p.name])

    decode_s = _timed(decode, runs)
    resize_s = {
        p.name: _timed(lambda n=p.name: _resized(sources[n], outputs[n]), runs) for p in PLATFORMS
    }
    encode_s = {p.name: _timed(lambda p=p: encode(made[p.name], p), runs) for p in PLATFORMS}
    return {
        "size": list(size),
        "outputs": {name: list(out) for name, out in outputs.items()},
        "decode_s": decode_s,
        "resize_s": resize_s,
        "encode_s": encode_s,
        "cpu_s": decode_s + sum(resize_s.values()) + sum(encode_s.values()),
    }


def wall(floor: dict, cores: int) -> float:
    """The least wall time of one picture on `cores` cores: the decode is one stream, and
    so is each chain of resizes; what follows spreads over the cores at best, but the
    largest rendition's resize and encode stay on one core."""
    names = list(floor["encode_s"])
    after = floor["cpu_s"] - floor["decode_s"]
    first = floor["resize_s"][names[0]] + floor["encode_s"][names[0]]
    return floor["decode_s"] + max(first, after / cores)


def _resized(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    return img if img.size == size else img.resize(size, Image.Resampling.LANCZOS)


def _timed(fn, runs: int) -> float:
    fn()  # warm-up
    return median(call_times(fn, runs))

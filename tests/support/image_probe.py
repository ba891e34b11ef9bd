"""Run hostile images through the real image pipeline, one at a time, measuring each.

``process(data)`` is what the importer does with downloaded bytes (imports.pictures.pipeline):
``check_and_render`` checks them with ``inspect_image`` (format, pixel cap, complete decode)
and renders every platform's rendition with cars.pictures.rendering and
cars.pictures.processors, raising a FetchError with a reason code on failure; the original
and its renditions are then written to the storage under their content names, as
``cars.pictures.store.store_picture`` writes them (without its database row: the probe
has no database). It returns "ok" or the reason code.

As a program (``python -m tests.support.image_probe COUNT SEED``, Django settings from
the environment) it replays the seeded corpus of tests/support/imagefuzz.py plus the
worst cases below under an address-space limit, and prints one JSON line per image:
its outcome, wall time, and the peak resident memory it added (VmHWM reset before each
image through /proc/self/clear_refs, so each figure is that image's own peak).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time


def process(data: bytes) -> str:
    import hashlib

    from cars.pictures.platforms import get_platforms
    from cars.pictures.store import _write
    from imports.fetching import FetchError
    from imports.pictures.pipeline import check_and_render

    try:
        new = check_and_render(hashlib.sha256(data).hexdigest(), data)
    except FetchError as exc:
        return str(exc.reason)
    assert set(new.renditions) == set(get_platforms())
    _write(new.name, new.data)
    for rendition in new.renditions.values():
        _write(rendition.name, rendition.data)
    return "ok"


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM (peak RSS) to the current RSS
        return True
    except OSError:
        return False


def worst_cases() -> list[tuple[str, bytes]]:
    from django.conf import settings

    from tests.support.images import bomb_png, photo_like, png_bytes

    side = int((settings.CARS_IMAGE_MAX_PIXELS * 0.95) ** 0.5)
    return [
        ("png bomb header 20000x20000", bomb_png()),
        ("png bomb real 20000x20000 1-bit", bomb_png(real=True)),
        (f"png RGBA {side}x{side} (just under the pixel cap)", png_bytes(side, side, "RGBA")),
        (f"jpeg photo {side}x{side} (just under the pixel cap)", photo_like(side, side)),
    ]


def main(count: int, seed: int) -> None:
    import django

    django.setup()
    from django.conf import settings

    from tests.support.imagefuzz import corpus

    settings.MEDIA_ROOT = tempfile.mkdtemp(prefix="image-probe-")
    limit = int(os.environ.get("PROBE_ADDRESS_SPACE", str(3 * 1024**3)))
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    process(seeds_first := next(iter(corpus(1, seed)))[1])  # warm up imports and codecs
    del seeds_first
    measurable = _reset_peak()
    for name, data in [*worst_cases(), *corpus(count, seed)]:
        print(json.dumps({"start": name}), flush=True)
        _reset_peak()
        rss = _vm_kib("VmRSS")
        started = time.perf_counter()
        outcome = process(data)
        elapsed = time.perf_counter() - started
        peak = _vm_kib("VmHWM") - rss if measurable else -1
        print(
            json.dumps({"name": name, "outcome": outcome, "seconds": elapsed, "peak_kib": peak}),
            flush=True,
        )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))

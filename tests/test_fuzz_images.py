"""Fuzzing the image pipeline (SPEC §4, §5): hostile bytes through inspect_image and the
renditions (cars.pictures.rendering, cars.pictures.processors), as the importer runs them.

Properties:

- every input ends with "ok" (original and every rendition stored) or a reason code
  (``invalid_image``, ``too_many_pixels``): never an exception;
- each input is handled within ``SECONDS_PER_IMAGE`` and with at most
  ``memory_bound(max_pixels)`` of added peak resident memory, measured per image in a
  subprocess (tests/support/image_probe.py), which also runs under an address-space
  limit so that a runaway allocation fails there instead of taking the machine down.
"""

import json
import os
import subprocess
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cars.pictures.reasons import ImageReason
from tests.support.fuzzing import PROFILE, examples
from tests.support.image_probe import process
from tests.support.imagefuzz import DIMENSIONS, KINDS, mutate, seeds, set_dimensions
from tests.support.stack import ROOT

pytestmark = pytest.mark.fuzz

MAX_PIXELS = 4_000_000  # the cap for these tests (production's default is 50 MP)
SECONDS_PER_IMAGE = 5.0
REASONS = {ImageReason.INVALID_IMAGE, ImageReason.TOO_MANY_PIXELS}


def memory_bound(max_pixels: int) -> int:
    """The stated bound, in KiB, on what one image may add to the peak RSS: 64 MiB of
    slack plus 16 bytes per allowed pixel (the RGBA decode, the RGB copy, and the first
    rendition made from it). With the default 50 MP cap: about 830 MiB."""
    return 64 * 1024 + 16 * max_pixels // 1024


@pytest.fixture
def pipeline_settings(settings, tmp_path):
    settings.CARS_IMAGE_MAX_PIXELS = MAX_PIXELS
    settings.MEDIA_ROOT = str(tmp_path / "media")


OPS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.floats(0, 1), st.integers(0, 999)), min_size=1, max_size=4
)


@given(name=st.sampled_from(sorted(seeds())), ops=OPS)
@example(name="png-rgba", ops=[("dims", 0.0, 88)])  # 65535 x 65535 claimed
@example(name="jpeg", ops=[("dims", 0.0, 0)])  # 0 x 0
@example(name="gif-animated", ops=[("truncate", 0.6, 0)])
@example(name="webp", ops=[("dims", 0.0, 55)])  # 7000 x 7000 claimed: under 50 MP
@example(name="jpeg-cmyk-exif", ops=[("flip", 0.5, 3), ("flip", 0.7, 5)])
@example(name="png-16bit", ops=[("magic", 0.0, 1)])  # a PNG body behind a JPEG magic
def test_mutated_images_end_with_ok_or_a_reason_code(pipeline_settings, name, ops):
    outcome = process(mutate(seeds()[name], ops))
    assert outcome == "ok" or outcome in REASONS


@given(
    name=st.sampled_from(sorted(seeds())),
    width=st.sampled_from(DIMENSIONS),
    height=st.sampled_from(DIMENSIONS),
)
def test_headers_claiming_any_size_are_refused_or_rendered(pipeline_settings, name, width, height):
    outcome = process(set_dimensions(seeds()[name], width, height))
    if width * height > MAX_PIXELS:
        assert outcome == ImageReason.TOO_MANY_PIXELS or outcome == ImageReason.INVALID_IMAGE
    else:
        assert outcome == "ok" or outcome in REASONS


def test_each_hostile_image_stays_within_time_and_memory_bounds(tmp_path):
    count = examples(120, 5_000)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "CARS_IMAGE_MAX_PIXELS": str(MAX_PIXELS),
        "PYTHONPATH": str(ROOT),
    }
    seed = 20_26 if PROFILE != "fuzz" else int.from_bytes(os.urandom(4), "big")
    timeout = 120 + SECONDS_PER_IMAGE * count / 10
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.support.image_probe", str(count), str(seed)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        lines = (exc.stdout or b"").decode().strip().splitlines()
        pytest.fail(f"the probe hung (seed {seed}); last line: {lines[-1:] or 'none'}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    done = [line for line in lines if "outcome" in line]
    started = [line["start"] for line in lines if "start" in line]
    assert result.returncode == 0, (
        f"seed {seed}: crashed on {started[-1] if started else '?'}\n{result.stderr[-3000:]}"
    )
    assert len(done) == count + 4
    bound = memory_bound(MAX_PIXELS)
    for line in done:
        assert line["outcome"] == "ok" or line["outcome"] in REASONS, line
        assert line["seconds"] < SECONDS_PER_IMAGE, line
        assert line["peak_kib"] < bound, (line, f"bound {bound} KiB")
    worst = max(done, key=lambda line: line["peak_kib"])
    slowest = max(done, key=lambda line: line["seconds"])
    print(
        f"\n{len(done)} images (seed {seed}): peak +{worst['peak_kib'] / 1024:.1f} MiB "
        f"({worst['name']}), slowest {slowest['seconds'] * 1000:.0f} ms ({slowest['name']}); "
        f"bound +{bound / 1024:.0f} MiB, {SECONDS_PER_IMAGE:g} s"
    )

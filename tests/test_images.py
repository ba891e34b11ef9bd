"""inspect_image: real bytes through real Pillow (SPEC §4 image rules). No Django."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image, ImageFile

from cars.pictures.reasons import ImageReason
from imports.fetching import FetchError
from imports.pictures.images import ACCEPTED_FORMATS, ImageInfo, checked_image, inspect_image
from tests.support import images as make

CAP = 50_000_000  # 50 MP
ROOT = Path(__file__).resolve().parent.parent


def render(data: bytes, *, max_pixels: int) -> ImageInfo:
    """What the import's render processes do (`check_and_render`): the check rides on the
    decode the renditions need, at whatever DCT scale they need."""
    from cars.pictures.rendering import render_all

    with checked_image(data, max_pixels=max_pixels) as (info, img):
        render_all("images/checked.jpg", img)
    return info


CHECKERS = {"inspect_image": inspect_image, "render": render}
check = inspect_image


@pytest.fixture(autouse=True, params=list(CHECKERS))
def checker(request, monkeypatch):
    """Every test runs with both ways of checking: alone (a dry run) and while rendering."""
    monkeypatch.setitem(globals(), "check", CHECKERS[request.param])


def refused(data: bytes, *, max_pixels: int = CAP) -> FetchError:
    with pytest.raises(FetchError) as info:
        check(data, max_pixels=max_pixels)
    return info.value


# --------------------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("data", "fmt", "extension"),
    [
        pytest.param(make.jpeg_bytes(64, 48), "JPEG", ".jpg", id="jpeg"),
        pytest.param(make.jpeg_bytes(64, 48, progressive=True), "JPEG", ".jpg", id="progressive"),
        pytest.param(make.jpeg_bytes(64, 48, cmyk=True), "JPEG", ".jpg", id="cmyk-jpeg"),
        pytest.param(make.mpo_bytes(64, 48), "JPEG", ".jpg", id="mpo-camera-jpeg"),
        pytest.param(make.png_bytes(64, 48), "PNG", ".png", id="png"),
        pytest.param(make.png_bytes(64, 48, "RGBA"), "PNG", ".png", id="png-rgba"),
        pytest.param(make.png_bytes(64, 48, "P", transparent=True), "PNG", ".png", id="png-p"),
        pytest.param(make.png_bytes(64, 48, "I;16"), "PNG", ".png", id="png-16bit"),
        pytest.param(make.gif_bytes(64, 48), "GIF", ".gif", id="gif"),
        pytest.param(make.gif_bytes(64, 48, frames=3), "GIF", ".gif", id="gif-animated"),
        pytest.param(make.webp_bytes(64, 48), "WEBP", ".webp", id="webp"),
        pytest.param(make.webp_bytes(64, 48, frames=3), "WEBP", ".webp", id="webp-animated"),
    ],
)
def test_accepts_each_format(data, fmt, extension):
    assert check(data, max_pixels=CAP) == ImageInfo(fmt, 64, 48, extension)


def test_reports_the_stored_size_of_a_rotated_jpeg():
    # The header's size (stored pixels), not the displayed one: the cap is about pixels.
    info = check(make.jpeg_bytes(64, 48, exif_orientation=6), max_pixels=CAP)
    assert (info.width, info.height) == (48, 64)


def test_accepted_formats_constant():
    assert ACCEPTED_FORMATS == ("JPEG", "PNG", "WEBP", "GIF")


def test_realistic_photo_is_accepted():
    assert check(make.photo_like(1600, 1200), max_pixels=CAP).format == "JPEG"


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("data", "hint"),
    [
        pytest.param(make.svg_bytes(), "SVG", id="svg"),
        pytest.param(make.html_bytes(), "HTML", id="html"),
        pytest.param(b'<?xml version="1.0"?><feed/>', "XML", id="xml"),
        pytest.param(make.bmp_bytes(8, 8), "BMP", id="bmp"),
        pytest.param(make.tiff_bytes(8, 8), "TIFF", id="tiff"),
        pytest.param(make.random_bytes(), "unrecognised", id="random-bytes"),
        pytest.param(b"GIF89a", "", id="gif-signature-only"),
        pytest.param(b"\x89PNG\r\n\x1a\n", "", id="png-signature-only"),
        pytest.param(b"\xff\xd8\xff", "", id="jpeg-signature-only"),
    ],
)
def test_refuses_what_is_not_an_accepted_image(data, hint):
    error = refused(data)
    assert error.reason == ImageReason.INVALID_IMAGE
    # Refused at the door: Pillow was never allowed to pick a BMP/TIFF/... decoder.
    assert error.message.startswith("not a"), error.message
    assert hint in error.message


def test_refuses_empty_bytes():
    error = refused(b"")
    assert error.reason == ImageReason.INVALID_IMAGE
    assert "empty" in error.message


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_refuses_truncated_jpeg(keep):
    assert refused(make.truncated(make.photo_like(640, 480), keep)).reason == "invalid_image"


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_refuses_truncated_progressive_jpeg(keep):
    data = make.jpeg_bytes(320, 240, progressive=True, image=make.photo_like_image(320, 240))
    assert refused(make.truncated(data, keep)).reason == "invalid_image"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "I;16"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.97])
def test_refuses_truncated_png(mode, keep):
    # 0.97 keeps every pixel but loses the IEND chunk: Pillow alone accepts that.
    data = make.png_bytes(300, 200, mode)
    assert refused(make.truncated(data, keep)).reason == "invalid_image"


@pytest.mark.parametrize("keep", [0.3, 0.8])
def test_refuses_truncated_gif_and_webp(keep):
    for data in (make.gif_bytes(300, 200), make.webp_bytes(300, 200)):
        assert refused(make.truncated(data, keep)).reason == "invalid_image"


def test_refuses_png_with_corrupted_pixel_data():
    data = bytearray(make.png_bytes(100, 100))
    idat = data.index(b"IDAT")
    data[idat + 20] ^= 0xFF  # breaks the chunk CRC
    assert refused(bytes(data)).reason == "invalid_image"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(make.truncated(make.photo_like(640, 480), 0.7), id="jpeg"),
        pytest.param(make.truncated(make.png_bytes(300, 200), 0.6), id="png"),
        pytest.param(make.truncated(make.png_bytes(300, 200), 0.97), id="png-no-iend"),
        pytest.param(make.truncated(make.gif_bytes(300, 200), 0.6), id="gif"),
    ],
)
def test_truncation_is_refused_even_with_load_truncated_images(monkeypatch, data):
    """Someone else setting Pillow's global flag must not make us accept broken files."""
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    error = refused(data)
    assert error.reason == ImageReason.INVALID_IMAGE


def test_complete_files_pass_with_load_truncated_images(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    for data in (make.photo_like(320, 240), make.png_bytes(64, 48), make.gif_bytes(64, 48, 2)):
        check(data, max_pixels=CAP)


def test_zero_size_image_is_refused():
    data = make.bomb_png(0, 10)
    assert refused(data).reason == ImageReason.INVALID_IMAGE


# --------------------------------------------------------------------------- pixel cap


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_pixel_cap_uses_the_header_and_says_why():
    error = refused(make.bomb_png(12000, 9000))
    assert error.reason == ImageReason.TOO_MANY_PIXELS
    assert "12000×9000 = 108.0 MP" in error.message
    assert "exceeds 50.0 MP" in error.message


def test_pixel_cap_is_inclusive():
    assert check(make.png_bytes(40, 25), max_pixels=1000).width == 40
    assert refused(make.png_bytes(40, 26), max_pixels=1000).reason == "too_many_pixels"


def test_pixel_cap_applies_to_honest_images_too():
    error = refused(make.jpeg_bytes(200, 100), max_pixels=10_000)
    assert error.reason == ImageReason.TOO_MANY_PIXELS
    assert "200×100" in error.message


def test_bomb_header_is_refused_in_milliseconds():
    data = make.bomb_png(20000, 20000)
    assert len(data) < 100
    started = time.perf_counter()
    error = refused(data)
    elapsed = time.perf_counter() - started
    assert error.reason == ImageReason.TOO_MANY_PIXELS
    assert "400.0 MP" in error.message
    assert elapsed < 0.25  # generous: the check reads ~30 header bytes


def test_real_compressed_bomb_is_refused_in_milliseconds():
    data = make.bomb_png(20000, 20000, real=True)  # a valid PNG, ~50 KB
    started = time.perf_counter()
    assert refused(data).reason == ImageReason.TOO_MANY_PIXELS
    assert time.perf_counter() - started < 0.25


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_as_error_is_too_many_pixels():
    assert refused(make.bomb_png(12000, 9000)).reason == ImageReason.TOO_MANY_PIXELS


_CHILD = """
import json, resource, sys
sys.path.insert(0, {root!r})
from imports.pictures.images import inspect_image
from imports.fetching import FetchError
from tests.support.images import bomb_png
data = bomb_png({w}, {h}, real=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    inspect_image(data, max_pixels={cap})
    reason = None
except FetchError as exc:
    reason = str(exc.reason)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"reason": reason, "grew_kb": after - before}}))
"""


@pytest.mark.parametrize(
    ("w", "h"),
    [
        pytest.param(12000, 9000, id="108MP-below-pillows-own-limit"),
        pytest.param(20000, 20000, id="400MP-above-pillows-own-limit"),
    ],
)
def test_bomb_is_refused_before_any_pixel_memory_is_allocated(w, h):
    """A valid all-zero PNG whose decode needs w*h bytes; refusal must not allocate them.

    Measured in a fresh interpreter (peak RSS is per process): decoding would add
    ~100-400 MB; the refusal adds almost nothing.
    """
    code = _CHILD.format(root=str(ROOT), w=w, h=h, cap=CAP)
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["reason"] == "too_many_pixels"
    assert outcome["grew_kb"] < 20_000, outcome  # < 20 MB (the decode would be 100+ MB)


def test_refusal_leaves_pillow_state_alone():
    limit = Image.MAX_IMAGE_PIXELS
    refused(make.bomb_png(20000, 20000))
    refused(make.truncated(make.photo_like(320, 240)))
    assert limit == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False

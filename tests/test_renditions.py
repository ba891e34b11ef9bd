"""render_all: one decode, chained fits, and the same pictures as rendering each alone."""

import io
import math
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageChops, ImageStat

from cars.models import Car
from cars.platforms import get_platforms
from cars.renditions import render_all
from tests.support.images import jpeg_bytes, photo_like

pytestmark = pytest.mark.django_db


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3
    return math.inf if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def car_with(data: bytes, name: str = "photo.jpg") -> Car:
    car = Car(pk=4242)
    car.image.save(name, ContentFile(data), save=False)
    car.image.file = ContentFile(data)
    return car


@pytest.mark.parametrize("orientation", [None, 6])
def test_every_platform_matches_rendering_it_alone_from_the_original(settings, orientation):
    data = (
        photo_like(3000, 2000, seed=5)
        if orientation is None
        else jpeg_bytes(3000, 2000, exif_orientation=orientation, image=None)
    )
    renditions = render_all(car_with(data))

    for name, platform in get_platforms().items():
        entry = renditions[name]
        with Image.open(f"{settings.MEDIA_ROOT}/{entry['name']}") as made:
            alone = platform.processors[0].process(Image.open(io.BytesIO(data)))
            assert made.size == alone.size == (entry["width"], entry["height"])
            assert made.info.get("progressive") == 1
            assert psnr(made, alone) > 30, name  # JPEG q80-q90 of the same picture


def test_storage_is_written_once_per_rendition_and_asked_nothing(settings, monkeypatch):
    from django.core.files.storage import FileSystemStorage

    calls = []
    for method in ("exists", "delete", "open", "size", "listdir"):
        original = getattr(FileSystemStorage, method)
        monkeypatch.setattr(
            FileSystemStorage,
            method,
            lambda self, *a, _m=method, _o=original, **k: calls.append(_m) or _o(self, *a, **k),
        )
    car = car_with(photo_like(1600, 1200))
    calls.clear()

    render_all(car)

    assert calls == [], "rendering only writes"
    assert len(list(Path(settings.MEDIA_ROOT).glob("CACHE/images/**/*.jpg"))) == 3


@pytest.mark.parametrize("memfd", ["available", "missing", "refused"])
def test_encoding_through_a_file_gives_imagekits_bytes(monkeypatch, memfd):
    """`_encoded` writes to a file (so Pillow releases the GIL); the bytes are pilkit's."""
    from pilkit.utils import img_to_fobj

    from cars.renditions import _encoded

    if memfd == "missing":  # other systems: a temporary file
        monkeypatch.delattr("os.memfd_create", raising=False)
    elif memfd == "refused":  # a sandbox (seccomp) or the fd limit

        def refuse(*args):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr("os.memfd_create", refuse)
    img = Image.open(io.BytesIO(photo_like(900, 600, seed=3))).convert("RGB")
    spec = Car(pk=1).image_web.generator
    expected = img_to_fobj(img, spec.format, spec.autoconvert, **spec.options).getvalue()
    assert _encoded(img, spec) == expected
    assert Image.open(io.BytesIO(expected)).info.get("progressive")

"""render_all: one decode, chained fits, each platform's encoder settings, and the same
pictures as rendering each alone; store_picture: each file of a new picture written once,
nothing else asked of the storage."""

import hashlib
import io
import math
import re
from pathlib import Path

import pytest
from django.db import transaction
from PIL import Image, ImageChops, ImageStat

from cars.models import Picture
from cars.pictures.platforms import get_platforms
from cars.pictures.rendering import render_all
from cars.pictures.store import store_picture
from tests.support.images import jpeg_bytes, photo_like

pytestmark = pytest.mark.django_db


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    mse = sum(v * v for v in ImageStat.Stat(diff).rms) / 3
    return math.inf if mse == 0 else 20 * math.log10(255 / math.sqrt(mse))


def original_name(data: bytes) -> tuple[str, str]:
    """(sha256, the name a picture of these JPEG bytes is stored under)."""
    sha256 = hashlib.sha256(data).hexdigest()
    return sha256, f"images/{sha256}.jpg"


def opened(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def media_files(settings) -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


@pytest.mark.parametrize("orientation", [None, 6])
def test_every_platform_matches_rendering_it_alone_from_the_original(settings, orientation):
    data = (
        photo_like(3000, 2000, seed=5)
        if orientation is None
        else jpeg_bytes(3000, 2000, exif_orientation=orientation, image=None)
    )
    sha256, name = original_name(data)
    renditions = render_all(name, opened(data))

    assert set(renditions) == set(get_platforms())
    assert media_files(settings) == [], "render_all only renders: the caller stores"
    for platform_name, platform in get_platforms().items():
        rendition = renditions[platform_name]
        # imagekit's cache-file name: the original's content and the spec's hash
        assert re.fullmatch(rf"CACHE/images/{sha256}/[0-9a-f]{{32}}\.jpg", rendition.name)
        with Image.open(io.BytesIO(rendition.data)) as made:
            alone = platform.processors[0].process(Image.open(io.BytesIO(data)))
            assert made.format == "JPEG"
            assert made.size == alone.size == (rendition.width, rendition.height)
            assert bool(made.info.get("progressive")) is platform.progressive
            assert psnr(made, alone) > 30, platform_name  # JPEG q80-q90 of the same picture
    assert len({r.name for r in renditions.values()}) == len(renditions)
    assert render_all(name, opened(data)).keys() == renditions.keys()
    assert [r.name for r in render_all(name, opened(data)).values()] == [
        r.name for r in renditions.values()
    ], "the same bytes always give the same names"


def test_storage_is_written_once_per_rendition_and_asked_nothing(settings, monkeypatch):
    """store_picture writes the original and each rendition once, asks nothing else, and
    a picture stored already is not written again."""
    from django.core.files.storage import FileSystemStorage

    from imports.pictures.pipeline import check_and_render

    data = photo_like(1600, 1200)
    sha256, name = original_name(data)
    new = check_and_render(sha256, data)  # what a render process hands back: not stored
    assert media_files(settings) == []
    calls: list[tuple[str, str]] = []
    for method in (
        "save",
        "exists",
        "delete",
        "open",
        "size",
        "listdir",
        "url",
        "get_modified_time",
        "get_created_time",
        "get_accessed_time",
    ):
        original = getattr(FileSystemStorage, method)
        monkeypatch.setattr(
            FileSystemStorage,
            method,
            lambda self, name, *a, _m=method, _o=original, **k: (
                calls.append((_m, name)) or _o(self, name, *a, **k)
            ),
        )

    with transaction.atomic():
        picture_id, created = store_picture(new)

    expected = {name: data, **{r.name: r.data for r in new.renditions.values()}}
    assert created
    assert len(expected) == 1 + len(get_platforms())
    assert sorted(calls) == sorted(("save", n) for n in expected), "each file once, nothing else"
    media = Path(settings.MEDIA_ROOT)
    assert {str(p.relative_to(media)): p.read_bytes() for p in media_files(settings)} == expected
    picture = Picture.objects.get(pk=picture_id)
    assert (picture.sha256, picture.image.name) == (sha256, name)
    assert (picture.width, picture.height) == (1600, 1200)
    assert picture.renditions == {p: r.stored() for p, r in new.renditions.items()}

    calls.clear()
    with transaction.atomic():
        assert store_picture(new) == (picture_id, False)
    assert calls == [], "a picture stored already is not written again"


@pytest.mark.parametrize("memfd", ["available", "missing", "refused"])
def test_encoding_through_a_file_gives_imagekits_bytes(monkeypatch, memfd):
    """`_encoded` writes to a file (so Pillow releases the GIL); the bytes are pilkit's."""
    from pilkit.utils import img_to_fobj

    from cars.pictures.rendering import _encoded

    if memfd == "missing":  # other systems: a temporary file
        monkeypatch.delattr("os.memfd_create", raising=False)
    elif memfd == "refused":  # a sandbox (seccomp) or the fd limit

        def refuse(*args):
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr("os.memfd_create", refuse)
    img = Image.open(io.BytesIO(photo_like(900, 600, seed=3))).convert("RGB")
    spec = Picture(image="images/photo.jpg").image_web.generator
    expected = img_to_fobj(img, spec.format, spec.autoconvert, **spec.options).getvalue()
    assert _encoded(img, spec) == expected
    assert Image.open(io.BytesIO(expected)).info.get("progressive")

"""Platforms are configuration: specs from settings become imagekit processor chains."""

import pytest
from django.core.exceptions import ImproperlyConfigured
from pilkit.processors import ResizeToFit

from cars.pictures.platforms import build_platforms
from cars.pictures.processors import Fill, Fit, Normalize


def test_default_platforms_match_the_spec():
    from django.conf import settings

    platforms = build_platforms(settings.CARS_PLATFORMS)
    assert {name: (p.processors, p.format, p.quality) for name, p in platforms.items()} == {
        "default": ((Fit(1920, 1920),), "JPEG", 90),
        "web": ((Fit(1280, 960),), "JPEG", 85),
        "mobile": ((Fit(640, 480),), "JPEG", 80),
    }
    # SPEC §5: progressive for default and web, baseline for mobile, no `optimize`.
    assert {name: p.options for name, p in platforms.items()} == {
        "default": {"quality": 90, "progressive": True, "optimize": False},
        "web": {"quality": 85, "progressive": True, "optimize": False},
        "mobile": {"quality": 80, "progressive": False, "optimize": False},
    }
    assert platforms["web"].attname == "image_web"


def test_a_platform_chooses_progressive_and_optimize():
    """Unsaid, `progressive` is true except for `mobile`; `optimize` is false. The choice
    reaches the encoder through imagekit's spec."""
    import io

    from PIL import Image

    from cars.models import Picture
    from cars.pictures.rendering import _encoded
    from tests.support.images import photo_like

    platforms = build_platforms(
        {
            "default": {"processors": [["fit", 64, 64]]},
            "mobile": {"processors": [["fit", 64, 64]]},
            "thumb": {"processors": [["fit", 64, 64]], "progressive": False, "optimize": True},
        }
    )
    assert [(p.progressive, p.optimize) for p in platforms.values()] == [
        (True, False),
        (False, False),
        (False, True),
    ]
    img = Image.open(io.BytesIO(photo_like(300, 200))).convert("RGB")
    picture = Picture(image="images/a.jpg")
    web, mobile = picture.image_web, picture.image_mobile
    made = {
        name: Image.open(io.BytesIO(_encoded(img, cachefile.generator)))
        for name, cachefile in (("web", web), ("mobile", mobile))
    }
    assert made["web"].info.get("progressive") and not made["mobile"].info.get("progressive")


def test_fill_and_foreign_processors_are_built_and_foreign_chains_normalized_first():
    platforms = build_platforms(
        {
            "default": {"processors": [["fill", 100, 50]]},
            "square": {
                "processors": [["pilkit.processors.ResizeToFit", {"width": 64, "height": 64}]],
                "format": "png",
            },
        }
    )
    assert platforms["default"].processors == (Fill(100, 50),)
    first, second = platforms["square"].processors
    assert isinstance(first, Normalize) and isinstance(second, ResizeToFit)
    assert platforms["square"].format == "PNG"


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"web": {"processors": [["fit", 1, 1]]}}, "'default' platform"),
        ({"default": {}, "bad-name": {}}, "not a valid platform name"),
        ({"default": {"processors": ["fit"]}}, "bad processor"),
    ],
)
def test_bad_platform_settings_fail_loudly(config, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        build_platforms(config)

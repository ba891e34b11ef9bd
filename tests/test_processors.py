"""Rendition processors on real images (SPEC §5). Real Pillow, no mocks, no Django."""

from __future__ import annotations

import math
import pickle
import struct
from io import BytesIO

import pytest
from PIL import Image, ImageChops, ImageOps, ImageStat
from pilkit.utils import save_image

from cars.pictures.processors import Fill, Fit, normalize
from tests.support import images as make
from tests.support.images import BLUE, GREEN, RED, WHITE, YELLOW, assert_quadrants, close

# What imagekit passes to save_image for a JPEG rendition (SPEC §5).
JPEG_OPTIONS = {"quality": 85, "progressive": True, "optimize": True}


def opened(data: bytes) -> Image.Image:
    """The lazy image imagekit hands the first processor (nothing decoded yet)."""
    return Image.open(BytesIO(data))


def rendition(processor, data: bytes) -> Image.Image:
    out = processor.process(opened(data))
    assert out.mode == "RGB"
    return out


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB")))
    mse = sum(diff.sum2) / (3 * a.size[0] * a.size[1])
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [
        pytest.param((4000, 3000), (1280, 960), (1280, 960), id="landscape-same-ratio"),
        pytest.param((3000, 4000), (1280, 960), (720, 960), id="portrait"),
        pytest.param((4000, 2000), (1280, 960), (1280, 640), id="wide"),
        pytest.param((600, 400), (1280, 960), (600, 400), id="small-never-upscaled"),
        pytest.param((1280, 960), (1280, 960), (1280, 960), id="exact"),
        pytest.param((1281, 961), (1280, 960), (1280, 960), id="one-pixel-over"),
        pytest.param((1300, 961), (1280, 960), (1280, 946), id="rounded-not-truncated"),
        pytest.param((5000, 10), (1280, 960), (1280, 3), id="extreme-strip"),
        pytest.param((10, 5000), (640, 480), (1, 480), id="extreme-column-keeps-1px"),
        pytest.param((4000, 3000), (1920, 1920), (1920, 1440), id="default-platform"),
    ],
)
def test_fit_sizes(source, box, expected):
    out = rendition(Fit(*box), make.jpeg_bytes(*source, quality=70))
    assert out.size == expected


@pytest.mark.parametrize(
    ("source", "box", "expected"),
    [
        pytest.param((4000, 3000), (300, 300), (300, 300), id="square-from-landscape"),
        pytest.param((3000, 4000), (400, 300), (400, 300), id="landscape-from-portrait"),
        pytest.param((800, 600), (800, 600), (800, 600), id="exact"),
        pytest.param((600, 400), (1280, 960), (533, 400), id="small-cropped-to-ratio-only"),
        pytest.param((600, 400), (800, 800), (400, 400), id="small-square"),
        pytest.param((600, 400), (100, 10), (100, 10), id="thin-band"),
    ],
)
def test_fill_sizes(source, box, expected):
    out = rendition(Fill(*box), make.jpeg_bytes(*source, quality=70))
    assert out.size == expected


def test_fill_crops_the_centre():
    # 400x200 quadrants filled into 100x100: the centre square still shows 4 quadrants.
    out = rendition(Fill(100, 100), make.png_bytes(400, 200))
    assert_quadrants(out)


def test_fill_crop_is_centred_on_wide_sources():
    # A 300x100 strip: red | white | blue thirds. Fill(100, 100) keeps only the middle.
    strip = Image.new("RGB", (300, 100), RED)
    strip.paste(WHITE, (100, 0, 200, 100))
    strip.paste(BLUE, (200, 0, 300, 100))
    out = Fill(100, 100).process(strip)
    assert out.size == (100, 100)
    assert close(out.getpixel((5, 50)), WHITE) and close(out.getpixel((94, 50)), WHITE)


def test_processors_reject_nonsense_sizes():
    with pytest.raises(ValueError):
        Fit(0, 100)
    with pytest.raises(ValueError):
        Fill(100, -1)


# --------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("processor", [Fit(160, 160), Fill(120, 90)], ids=repr)
def test_exif_orientation_gives_an_upright_picture(orientation, processor):
    data = make.jpeg_bytes(400, 300, exif_orientation=orientation)
    out = rendition(processor, data)
    assert out.size == (160, 120) if isinstance(processor, Fit) else (120, 90)
    assert_quadrants(out)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_normalize_matches_imageops_exif_transpose(orientation):
    data = make.jpeg_bytes(80, 60, exif_orientation=orientation)
    ours = normalize(opened(data))
    reference = ImageOps.exif_transpose(opened(data)).convert("RGB")
    assert ours.size == reference.size == (80, 60)
    assert psnr(ours, reference) == 99.0  # identical pixels
    assert_quadrants(ours)


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_large_sideways_jpeg_is_drafted_with_the_box_swapped(orientation):
    # Displayed 4000x3000, stored 3000x4000: the web box must apply to the displayed size.
    data = make.jpeg_bytes(4000, 3000, exif_orientation=orientation, quality=80)
    source = opened(data)
    out = Fit(1280, 960).process(source)
    assert out.size == (1280, 960)
    assert source.size == (1500, 2000)  # decoded at 1/2 scale, still sideways
    assert_quadrants(out)


def test_orientation_in_png_and_webp_exif_is_applied():
    stored = make.quadrants(40, 30).transpose(Image.Transpose.ROTATE_90)  # orientation 6
    exif = Image.Exif()
    exif[make.EXIF_ORIENTATION_TAG] = 6
    for fmt in ("PNG", "WEBP"):
        buf = BytesIO()
        stored.save(buf, fmt, exif=exif.tobytes(), **({"lossless": True} if fmt == "WEBP" else {}))
        out = rendition(Fit(100, 100), buf.getvalue())
        assert out.size == (40, 30), fmt
        assert_quadrants(out)


def test_malformed_orientation_values_are_ignored():
    for value in (0, 9, 255):
        buf = BytesIO()
        exif = Image.Exif()
        exif[make.EXIF_ORIENTATION_TAG] = value
        make.quadrants(40, 30).save(buf, "JPEG", exif=exif.tobytes(), quality=95)
        out = rendition(Fit(100, 100), buf.getvalue())
        assert out.size == (40, 30)
        assert_quadrants(out)


# --------------------------------------------------------------------------- modes


def test_cmyk_jpeg_colours():
    # Pillow writes Adobe-style (inverted) CMYK with an APP14 marker, as Photoshop does.
    data = make.jpeg_bytes(200, 150, cmyk=True, quality=95)
    assert opened(data).mode == "CMYK"
    assert_quadrants(rendition(Fit(100, 100), data), tolerance=12)


def test_progressive_cmyk_jpeg_colours():
    data = make.jpeg_bytes(640, 480, cmyk=True, progressive=True, quality=95)
    out = rendition(Fit(320, 240), data)
    assert out.size == (320, 240)
    assert_quadrants(out, tolerance=12)


def test_transparency_is_white():
    cases = {
        "RGBA": make.png_bytes(200, 100, "RGBA"),
        "LA": make.png_bytes(200, 100, "LA"),
        "P+tRNS index": make.png_bytes(200, 100, "P", transparent=True),
        "P+alpha table": make.png_bytes(200, 100, "PA"),
        "GIF": make.gif_bytes(200, 100, transparent=True),
        "WebP alpha": make.webp_bytes(200, 100, alpha=True),
    }
    for name, data in cases.items():
        out = rendition(Fit(100, 100), data)
        assert out.size == (100, 50), name
        assert out.getpixel((75, 12)) == WHITE, name  # right half: transparent over black
        assert out.getpixel((75, 37)) == WHITE, name
        left = out.getpixel((25, 12))
        expected = RED if name != "LA" else (87, 87, 87)  # LA is the grey version of red
        assert close(left, expected, 6), (name, left)


def test_partial_alpha_is_composited_on_white():
    img = Image.new("RGBA", (10, 10), (255, 0, 0, 128))
    out = Fit(10, 10).process(img)
    assert close(out.getpixel((5, 5)), (255, 127, 127), 2)


def test_palette_without_transparency():
    data = make.png_bytes(200, 150, "P")
    assert opened(data).mode == "P"
    assert_quadrants(rendition(Fit(100, 100), data), tolerance=6)


def test_opaque_rgba_is_just_rgb():
    data = make.png_bytes(200, 150, "RGB")
    rgba = opened(data).convert("RGBA")
    assert_quadrants(Fit(100, 100).process(rgba), tolerance=2)


def test_sixteen_bit_grey_is_scaled_not_clipped():
    data = make.png_bytes(256, 64, "I;16")
    source = opened(data)
    assert source.mode == "I;16"
    out = rendition(Fit(128, 128), data)
    assert out.size == (128, 32)
    left, middle, right = (out.getpixel((x, 16))[0] for x in (2, 64, 125))
    assert left < 16
    assert 120 <= middle <= 136  # mid-grey stays mid-grey (clipping would give 255)
    assert right > 240
    assert out.getpixel((64, 16))[0] == out.getpixel((64, 16))[1] == out.getpixel((64, 16))[2]


@pytest.mark.parametrize(
    ("mode", "raw"),
    [
        ("I;16", struct.pack("<H", 32768) * 64),
        ("I;16L", struct.pack("<H", 32768) * 64),
        ("I;16B", struct.pack(">H", 32768) * 64),
        ("I", struct.pack("<i", 32768) * 64),
    ],
)
def test_deep_grey_modes_in_memory(mode, raw):
    img = Image.frombytes(mode, (8, 8), raw)
    assert img.getpixel((4, 4)) == 32768
    out = normalize(img)
    assert 125 <= out.getpixel((4, 4))[0] <= 130, mode


@pytest.mark.parametrize(
    ("mode", "fill", "expected"),
    [
        ("1", 1, WHITE),
        ("L", 128, (128, 128, 128)),
        ("F", 0.5, (127, 127, 127)),  # 0..1 floats
        ("F", 200.0, (200, 200, 200)),  # 0..255 floats
        ("I", 200, (200, 200, 200)),  # 8-bit values in a 32-bit image
        ("RGBX", (10, 20, 30, 0), (10, 20, 30)),
        ("YCbCr", (76, 85, 255), (254, 0, 0)),
        ("HSV", (0, 255, 255), (255, 0, 0)),
        ("La", (100, 255), (100, 100, 100)),
        ("RGBa", (10, 20, 30, 255), (10, 20, 30)),
        ("PA", None, None),
    ],
)
def test_every_mode_becomes_rgb(mode, fill, expected):
    img = Image.new(mode, (8, 8), fill) if fill is not None else Image.new(mode, (8, 8))
    out = normalize(img)
    assert out.mode == "RGB"
    assert out.size == (8, 8)
    if expected is not None:
        assert close(out.getpixel((4, 4)), expected, 2), out.getpixel((4, 4))


def test_animated_gif_uses_the_first_frame():
    data = make.gif_bytes(200, 150, frames=4)
    assert opened(data).n_frames == 4
    assert_quadrants(rendition(Fit(100, 100), data), tolerance=8)


def test_gif_seeked_elsewhere_still_renders_the_first_frame():
    img = opened(make.gif_bytes(200, 150, frames=4))
    img.seek(2)
    assert_quadrants(Fit(100, 100).process(img), tolerance=8)


def test_animated_webp_uses_the_first_frame():
    data = make.webp_bytes(200, 150, frames=3)
    assert opened(data).n_frames == 3
    assert_quadrants(rendition(Fit(100, 100), data), tolerance=4)


def test_camera_mpo_renders_its_first_picture():
    assert_quadrants(rendition(Fit(100, 100), make.mpo_bytes(200, 150)))


# --------------------------------------------------------------------------- colour


def test_non_srgb_profile_is_converted_to_srgb():
    # Under the swapped profile, stored red *means* blue (and yellow means cyan).
    data = make.jpeg_bytes(200, 150, icc=make.swapped_rgb_profile(), quality=95)
    out = rendition(Fit(100, 100), data)
    assert close(out.getpixel((25, 18)), BLUE)
    assert close(out.getpixel((75, 56)), (30, 220, 230))


def test_profile_only_named_srgb_is_still_converted():
    data = make.jpeg_bytes(200, 150, icc=make.swapped_rgb_profile(keep_srgb_name=True))
    assert close(rendition(Fit(100, 100), data).getpixel((25, 18)), BLUE)


def test_srgb_profile_changes_nothing():
    plain = rendition(Fit(100, 100), make.jpeg_bytes(200, 150, quality=95))
    tagged = rendition(Fit(100, 100), make.jpeg_bytes(200, 150, quality=95, icc=True))
    assert psnr(plain, tagged) == 99.0


@pytest.mark.parametrize(
    "profile",
    [
        pytest.param(b"not an icc profile" * 20, id="garbage"),
        pytest.param(b"", id="empty"),
        pytest.param(None, id="lab-profile-on-rgb-pixels"),
    ],
)
def test_unusable_profiles_are_dropped(profile):
    if profile is None:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    data = make.jpeg_bytes(200, 150, quality=95, icc=profile or False)
    out = rendition(Fit(100, 100), data)
    assert_quadrants(out, tolerance=8)


def test_profile_on_cmyk_with_rgb_profile_falls_back_to_plain_conversion():
    data = make.jpeg_bytes(200, 150, cmyk=True, quality=95, icc=make.srgb_profile())
    assert_quadrants(rendition(Fit(100, 100), data), tolerance=12)


# --------------------------------------------------------------------------- metadata


def _decorated_jpeg() -> bytes:
    """A JPEG carrying EXIF (Make + orientation), an ICC profile, XMP and a comment."""
    buf = BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    exif[make.EXIF_ORIENTATION_TAG] = 1
    make.quadrants(400, 300).save(
        buf,
        "JPEG",
        exif=exif.tobytes(),
        icc_profile=make.srgb_profile(),
        xmp=b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>secret</x:xmpmeta>",
        comment=b"shot at home",
        quality=90,
    )
    return buf.getvalue()


@pytest.mark.parametrize("processor", [Fit(200, 200), Fill(100, 100)], ids=repr)
def test_output_carries_no_metadata_and_saves_progressive(processor):
    source = opened(_decorated_jpeg())
    assert {"exif", "icc_profile", "comment"} <= set(source.info)
    out = processor.process(source)
    assert out.info == {}
    assert not out.getexif()

    saved = save_image(out, BytesIO(), "JPEG", dict(JPEG_OPTIONS))  # imagekit's own save
    data = saved.getvalue()
    again = Image.open(BytesIO(data))
    assert again.format == "JPEG"
    assert again.mode == "RGB"
    assert again.info.get("progressive") == 1
    for key in ("exif", "icc_profile", "xmp", "comment", "adobe"):
        assert key not in again.info, key
    assert not again.getexif()
    assert b"TestCam" not in data and b"secret" not in data and b"shot at home" not in data


def test_rotated_source_saves_upright_without_orientation_tag():
    out = Fit(200, 200).process(opened(make.jpeg_bytes(400, 300, exif_orientation=8)))
    data = save_image(out, BytesIO(), "JPEG", dict(JPEG_OPTIONS)).getvalue()
    again = Image.open(BytesIO(data))
    assert make.EXIF_ORIENTATION_TAG not in again.getexif()
    assert again.size == (200, 150)
    assert_quadrants(again)


def test_normalize_returns_a_new_image_and_leaves_a_loaded_input_alone():
    source = opened(_decorated_jpeg())
    source.load()
    info_before = dict(source.info)
    out = normalize(source)
    assert out is not source
    assert source.info == info_before
    assert out.info == {}
    assert out.size == source.size


# --------------------------------------------------------------------------- speed path


def test_large_jpeg_is_drafted_and_stays_sharp():
    """4000x3000 -> web 1280x960 through libjpeg's 1/2-scale decode, without visible loss.

    Pillow's API shows the draft: the source image object reports its decoded size.
    Quality: compared with a full-size decode + LANCZOS, the result is > 40 dB PSNR,
    while a naive 1/8 decode blown back up (a blurry rendition) scores far lower.
    """
    data = make.photo_like(4000, 3000)
    source = opened(data)
    out = Fit(1280, 960).process(source)
    assert out.size == (1280, 960)
    assert source.size == (2000, 1500)

    reference = opened(data).convert("RGB").resize((1280, 960), Image.Resampling.LANCZOS)
    assert psnr(out, reference) > 40

    blurry = opened(data)
    blurry.draft("RGB", (500, 375))
    blurry = blurry.convert("RGB").resize((1280, 960), Image.Resampling.LANCZOS)
    assert psnr(blurry, reference) < psnr(out, reference) - 6


@pytest.mark.parametrize(
    ("processor", "decoded", "size"),
    [
        pytest.param(Fit(640, 480), (1000, 750), (640, 480), id="mobile-quarter-scale"),
        pytest.param(Fit(320, 240), (500, 375), (320, 240), id="thumb-eighth-scale"),
        pytest.param(Fit(1920, 1920), (2000, 1500), (1920, 1440), id="default-half-scale"),
        pytest.param(Fill(300, 300), (500, 375), (300, 300), id="fill-square"),
    ],
)
def test_draft_decodes_at_the_smallest_scale_that_covers_the_output(processor, decoded, size):
    """The smallest DCT scale whose decode still has the output's pixels (the issue's rule:
    one decode at the right scale), and still >= 40 dB from a full decode + Lanczos."""
    data = make.photo_like(4000, 3000)
    source = opened(data)
    out = processor.process(source)
    assert source.size == decoded
    assert out.size == size
    if isinstance(processor, Fit):
        reference = opened(data).convert("RGB").resize(size, Image.Resampling.LANCZOS)
        assert psnr(out, reference) >= 40


def test_web_and_mobile_from_the_same_photo_are_consistent():
    data = make.photo_like(4000, 3000)
    web = Fit(1280, 960).process(opened(data))
    mobile = Fit(640, 480).process(opened(data))
    assert psnr(web.resize((640, 480), Image.Resampling.LANCZOS), mobile) > 35


def test_png_sources_are_resized_without_draft():
    data = make.png_bytes(2000, 1500)
    source = opened(data)
    out = Fit(640, 480).process(source)
    assert source.size == (2000, 1500)
    assert out.size == (640, 480)
    assert_quadrants(out, tolerance=4)


# --------------------------------------------------------------------------- identity


def test_repr_is_stable_and_readable():
    assert repr(Fit(1280, 960)) == "Fit(1280, 960)"
    assert repr(Fill(300, 300)) == "Fill(300, 300)"


def test_pickle_is_stable_for_imagekit_cache_names():
    # imagekit hashes a spec's processors with a protocol-0 pickle (imagekit.hashers).
    one, two = pickle.dumps(Fit(1280, 960), 0), pickle.dumps(Fit(1280, 960), 0)
    assert one == two
    assert pickle.dumps(Fit(1280, 960), 0) != pickle.dumps(Fit(640, 480), 0)
    assert pickle.dumps(Fit(640, 480), 0) != pickle.dumps(Fill(640, 480), 0)
    assert pickle.loads(one) == Fit(1280, 960)
    assert pickle.loads(pickle.dumps(Fill(3, 4))) == Fill(3, 4)
    assert hash(Fit(1, 2)) == hash(Fit(1, 2))


def _imagekit_hasher():
    """imagekit.hashers.pickle, loaded from its file: importing the imagekit package
    itself needs Django settings, the hasher module does not."""
    import importlib.util
    from pathlib import Path

    import pilkit

    site_packages = Path(pilkit.__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location(
        "_imagekit_hashers", site_packages / "imagekit" / "hashers.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.pickle


def test_imagekit_hasher_gives_the_same_name_for_equal_specs():
    imagekit_hash = _imagekit_hasher()
    assert imagekit_hash([Fit(1280, 960)]) == imagekit_hash([Fit(1280, 960)])
    assert imagekit_hash([Fit(1280, 960)]) != imagekit_hash([Fit(1280, 961)])
    assert imagekit_hash([Fit(640, 480)]) != imagekit_hash([Fill(640, 480)])


def test_pilkit_pipeline_runs_the_processors():
    from pilkit.processors import ProcessorPipeline

    data = make.jpeg_bytes(800, 600, exif_orientation=6)
    out = ProcessorPipeline([Fit(400, 400)]).process(opened(data))
    assert out.size == (400, 300)
    assert_quadrants(out)


@pytest.mark.parametrize("colour", [RED, GREEN, BLUE, YELLOW])
def test_solid_colours_survive_a_full_round_trip(colour):
    buf = BytesIO()
    Image.new("RGB", (300, 200), colour).save(buf, "JPEG", quality=95)
    out = Fit(150, 150).process(opened(buf.getvalue()))
    data = save_image(out, BytesIO(), "JPEG", dict(JPEG_OPTIONS)).getvalue()
    assert close(Image.open(BytesIO(data)).getpixel((75, 50)), colour, 6)


def test_normalize_processor_makes_foreign_chains_safe():
    from cars.pictures.processors import Normalize

    img = Image.open(BytesIO(make.jpeg_bytes(40, 20, exif_orientation=6, cmyk=True)))
    out = Normalize().process(img)
    assert out.mode == "RGB"
    assert out.size == (40, 20)
    assert Normalize() == Normalize() and repr(Normalize()) == "Normalize()"

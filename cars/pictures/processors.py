"""Rendition processors for django-imagekit specs (SPEC §5), Pillow only.

One implementation serves both imagekit (``process``) and the import's renderer
(`cars.pictures.rendering.render_all`), in two steps:

1. ``decode(img, scale)``: the first frame of the lazy image from ``Image.open``, a JPEG
   decoded at the smallest DCT scale (1/2, 1/4, 1/8) that still covers ``scale`` of its
   size (``Image.draft``); any mode converted to RGB (transparency composited on white,
   16-bit and float greyscale scaled, not clipped); an embedded profile that is not sRGB
   converted to sRGB with ImageCms (relative colorimetric, black-point compensation);
   the EXIF orientation applied; no EXIF, ICC, XMP or comment kept.
2. ``Fit.resize`` / ``Fill.resize``: the upright picture resized to the output size
   planned from the *original's* upright size, so a DCT-scaled decode never changes the
   output's dimensions. Never upscales.

Processors are plain objects with integer attributes only, so imagekit's protocol-0
pickle hash (its cache file names) is stable and the repr reads ``Fit(1280, 960)``.
"""

from __future__ import annotations

import functools
import math
from io import BytesIO

from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

try:  # littleCMS is optional in Pillow builds: without it profiles are dropped.
    from PIL import ImageCms
except ImportError:  # pragma: no cover - depends on the Pillow build
    ImageCms = None  # type: ignore[assignment]

__all__ = ["Fill", "Fit", "Normalize", "decode", "normalize", "upright_size"]

#: The resampling filter of every resize.
RESAMPLE = Image.Resampling.LANCZOS
#: ``Image.resize(reducing_gap=...)``: a cheap box reduction first for large reductions.
REDUCING_GAP = 3.0

WHITE = (255, 255, 255)

_EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the transpose that displays the stored pixels upright
# (identical to PIL.ImageOps.exif_transpose).
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SIDEWAYS = frozenset({5, 6, 7, 8})


# --------------------------------------------------------------------------- processors


class _Processor:
    """Common plumbing: integer box, stable repr / equality / pickle."""

    def __init__(self, width: int, height: int):
        width, height = int(width), int(height)
        if width <= 0 or height <= 0:
            raise ValueError(f"{type(self).__name__} needs a positive size, got {width}x{height}")
        self.width = width
        self.height = height

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.width}, {self.height})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash((type(self).__name__, self.width, self.height))

    def process(self, img: Image.Image) -> Image.Image:
        size = upright_size(img)
        return self.resize(decode(img, self.scale(size)), size)

    def output_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """The size this processor makes from an upright picture of `size`."""
        return self._plan(size)[0]

    def scale(self, size: tuple[int, int]) -> float:
        """How much of an upright picture of `size`'s resolution the output uses (<= 1)."""
        (out_w, out_h), (left, top, right, bottom) = self._plan(size)
        return min(1.0, max(out_w / (right - left), out_h / (bottom - top)))

    def resize(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        """`img`, a decoded upright picture whose original was `size`, made into the output
        (`img` itself when it is the output already).

        `img` may be smaller than `size` (a DCT-scaled decode): the plan is made on the
        original's size and scaled to `img`, so the output's dimensions never depend on it.
        """
        out, (left, top, right, bottom) = self._plan(size)
        fx, fy = img.size[0] / size[0], img.size[1] / size[1]
        box = (left * fx, top * fy, right * fx, bottom * fy)
        if out == img.size and box == (0, 0, *img.size):
            return img
        if (box[2] - box[0], box[3] - box[1]) == out:
            return img.crop(tuple(round(v) for v in box))
        return img.resize(out, RESAMPLE, box=box, reducing_gap=REDUCING_GAP)

    def _plan(
        self, size: tuple[int, int]
    ) -> tuple[tuple[int, int], tuple[float, float, float, float]]:
        """(output size, the region of the upright source it shows)."""
        raise NotImplementedError


class Fit(_Processor):
    """Fit inside width x height keeping the aspect ratio; never upscale."""

    def _plan(self, size):
        w, h = size
        scale = min(self.width / w, self.height / h)
        if scale >= 1:
            return (w, h), (0, 0, w, h)
        out = (
            max(1, min(self.width, round(w * scale))),
            max(1, min(self.height, round(h * scale))),
        )
        return out, (0, 0, w, h)


class Fill(_Processor):
    """Resize and centre-crop to exactly width x height.

    Never upscales: when the source is too small to cover the box, it is only cropped
    to the box's aspect ratio (so the output is smaller than width x height).
    """

    def _plan(self, size):
        w, h = size
        cover = max(self.width / w, self.height / h)
        if cover >= 1:
            # Only crop: the largest centred region (whole pixels) with the box's ratio.
            crop_w = min(w, max(1, round(self.width / cover)))
            crop_h = min(h, max(1, round(self.height / cover)))
            left, top = (w - crop_w) // 2, (h - crop_h) // 2
            return (crop_w, crop_h), (left, top, left + crop_w, top + crop_h)
        crop_w, crop_h = self.width / cover, self.height / cover
        left, top = (w - crop_w) / 2, (h - crop_h) / 2
        return (self.width, self.height), (left, top, left + crop_w, top + crop_h)


class Normalize:
    """`normalize` as a processor: put first in chains made only of foreign processors."""

    def process(self, img: Image.Image) -> Image.Image:
        return normalize(img)

    def scale(self, size: tuple[int, int]) -> float:
        return 1.0

    def resize(self, img: Image.Image, size: tuple[int, int]) -> Image.Image:
        return img.copy()  # for foreign processors, which may change it in place

    def __repr__(self) -> str:
        return "Normalize()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash("Normalize")


# --------------------------------------------------------------------------- decoding


def upright_size(img: Image.Image) -> tuple[int, int]:
    """The size `img` is displayed at, once its EXIF orientation is applied."""
    width, height = img.size
    return (height, width) if _orientation(img) in _SIDEWAYS else (width, height)


def normalize(img: Image.Image) -> Image.Image:
    """Any image -> upright RGB, in sRGB, transparency on white, no metadata; same size."""
    return decode(img, 1.0)


def decode(img: Image.Image, scale: float = 1.0) -> Image.Image:
    """Upright RGB in sRGB with no metadata; a JPEG decoded at the smallest DCT scale that
    keeps at least `scale` of its size (the lazy image from ``Image.open``; a loaded one
    is used as it is). The result is always a new image."""
    source = img
    orientation = _orientation(img)
    icc = img.info.get("icc_profile")
    _first_frame(img)
    if scale < 1.0 and isinstance(img, JpegImageFile):  # MPO too
        width, height = img.size  # stored orientation: the scale is symmetric
        img.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    img.load()
    img = _to_srgb(_flatten(img), icc)
    if orientation in _TRANSPOSE:
        img = img.transpose(_TRANSPOSE[orientation])
    if img is source or img.mode != "RGB":
        img = img.convert("RGB")  # convert() always returns a new image
    img.info = {}
    return img


def _orientation(img: Image.Image) -> int:
    if not isinstance(img, JpegImageFile):
        # PNG and others may keep EXIF after the pixels, so getexif() decodes them: do it
        # here, where a decoding error is not taken for malformed EXIF.
        img.load()
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # malformed EXIF must not cost us the picture
        return 1
    return value if isinstance(value, int) and value in _TRANSPOSE else 1


def _first_frame(img: Image.Image) -> None:
    if getattr(img, "n_frames", 1) > 1 and img.tell() != 0:
        img.seek(0)


# --------------------------------------------------------------------------- modes


def _flatten(img: Image.Image) -> Image.Image:
    """Return an RGB, L or CMYK image; alpha composited on white, deep greys scaled."""
    mode = img.mode
    if mode in ("RGB", "L", "CMYK") and not _has_transparency(img):
        return img
    if mode == "1":
        return img.convert("L")
    if mode in ("LA", "La"):
        la = img.convert("LA") if mode == "La" else img
        return _on_white(la.getchannel("L"), la.getchannel("A"))
    if mode in ("RGBA", "RGBa", "PA", "P", "RGB", "L") and _has_transparency(img):
        rgba = img.convert("RGBA")
        return _on_white(rgba.convert("RGB"), rgba.getchannel("A"))
    if mode in ("RGBA", "RGBa", "PA"):  # alpha channel but nothing transparent
        return img.convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        return _deep_grey_to_l(img.convert("I") if mode != "I" else img, integer=True)
    if mode == "F":
        return _deep_grey_to_l(img, integer=False)
    return img.convert("RGB")  # P, RGBX, YCbCr, HSV, LAB, ...


def _has_transparency(img: Image.Image) -> bool:
    if img.mode in ("RGBA", "RGBa", "LA", "La", "PA"):
        lo, _ = img.getchannel(len(img.getbands()) - 1).getextrema()  # "A" or "a"
        return lo < 255
    return img.has_transparency_data


def _on_white(colour: Image.Image, alpha: Image.Image) -> Image.Image:
    background = Image.new(colour.mode, colour.size, 255 if colour.mode == "L" else WHITE)
    background.paste(colour, (0, 0), alpha)
    return background


def _deep_grey_to_l(img: Image.Image, *, integer: bool) -> Image.Image:
    """Scale 16-bit / 32-bit / float greyscale to 0..255 instead of clipping.

    Integer data: 0..255 is kept, up to 65535 is divided by 257 (16-bit), anything larger
    is scaled by its own maximum. Float data: up to 1.0 is treated as 0..1, up to 255 as
    8-bit, otherwise like integers. Negative values clip to black.
    """
    _, hi = img.getextrema()
    if not integer and hi <= 1.0:
        scale = 255.0
    elif hi <= 255:
        scale = 1.0
    elif hi <= 65535:
        scale = 1 / 257
    else:
        scale = 255 / hi
    if scale != 1.0:
        img = img.point(lambda v: v * scale)
    return img.convert("L")


# --------------------------------------------------------------------------- colour


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Colour-manage to sRGB when a usable non-sRGB profile is embedded; else plain RGB."""
    if icc and ImageCms is not None and img.mode in ("RGB", "L", "CMYK"):
        transform = _transform(bytes(icc), img.mode)
        if transform is not None:
            try:
                return transform.apply(img)
            except (OSError, ValueError, ImageCms.PyCMSError):
                pass
    return img if img.mode == "RGB" else img.convert("RGB")


_PROFILE_SPACES = {"RGB": "RGB", "L": "GRAY", "CMYK": "CMYK"}


@functools.lru_cache(maxsize=32)
def _transform(icc: bytes, mode: str):
    """A cached profile -> sRGB transform, or None (sRGB already, unusable, mismatched)."""
    try:
        profile = ImageCms.ImageCmsProfile(BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        description = profile.profile.profile_description or ""
        if space != _PROFILE_SPACES[mode]:
            return None
        if mode == "RGB" and _is_srgb(profile.profile, description):
            return None
        return ImageCms.buildTransform(
            profile,
            _srgb(),
            mode,
            "RGB",
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            flags=ImageCms.Flags.BLACKPOINTCOMPENSATION | ImageCms.Flags.NOCACHE,
        )
    except (OSError, ValueError, TypeError, ImageCms.PyCMSError):
        return None


def _is_srgb(profile, description: str) -> bool:
    """Named sRGB *and* sRGB's colorants: converting would be an identity, skip it."""
    if "sRGB" not in description:
        return False
    reference = _srgb().profile
    for name in ("red_colorant", "green_colorant", "blue_colorant"):
        ours, theirs = getattr(profile, name), getattr(reference, name)
        if ours is None or theirs is None:
            return False
        if any(abs(a - b) > 0.01 for a, b in zip(ours[0], theirs[0], strict=True)):
            return False
    return True


@functools.cache
def _srgb():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))

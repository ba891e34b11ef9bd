"""Factories for real image bytes (and hostile non-images) used by the image tests.

Every picture factory draws the same *displayed* picture unless said otherwise: four
quadrants, top-left RED, top-right GREEN, bottom-left BLUE, bottom-right YELLOW. Sampling
the four quadrant centres of a result tells whether it is upright, mirrored or rotated.
``w`` and ``h`` are always the displayed size: with an EXIF orientation the stored pixels
are the inverse-transformed picture (``h`` by ``w`` for orientations 5-8), exactly what a
camera writes.

Images with transparency make the RIGHT half fully transparent over BLACK pixels, so a
converter that drops alpha naively shows black there instead of the expected white.

Pure Pillow + stdlib: no Django, no numpy.
"""

from __future__ import annotations

import functools
import random
import struct
import zlib
from io import BytesIO

from PIL import Image, ImageCms, ImageDraw

RED = (220, 30, 30)
GREEN = (30, 180, 30)
BLUE = (30, 30, 220)
YELLOW = (230, 220, 30)
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)

QUADRANTS = {"top_left": RED, "top_right": GREEN, "bottom_left": BLUE, "bottom_right": YELLOW}

EXIF_ORIENTATION_TAG = 0x0112

# The transpose that *displays* a stored image with this orientation (what
# ImageOps.exif_transpose does), and its inverse (what a camera did when storing).
_DISPLAY = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_STORE = {
    **_DISPLAY,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


# --------------------------------------------------------------------------- pictures


def quadrants(w: int, h: int) -> Image.Image:
    """The displayed reference picture (RGB): red / green over blue / yellow."""
    img = Image.new("RGB", (w, h), RED)
    draw = ImageDraw.Draw(img)
    cx, cy = w // 2, h // 2
    draw.rectangle((cx, 0, w, cy), fill=GREEN)
    draw.rectangle((0, cy, cx, h), fill=BLUE)
    draw.rectangle((cx, cy, w, h), fill=YELLOW)
    return img


def with_transparent_right_half(img: Image.Image) -> Image.Image:
    """RGBA copy of ``img`` whose right half is fully transparent black."""
    rgba = img.convert("RGBA")
    w, h = rgba.size
    ImageDraw.Draw(rgba).rectangle((w // 2, 0, w, h), fill=(0, 0, 0, 0))
    return rgba


def grey_gradient_16(w: int, h: int) -> Image.Image:
    """16-bit greyscale ("I;16"): 0 at the left edge to 65535 at the right edge."""
    row = [round(x * 65535 / max(1, w - 1)) for x in range(w)]
    raw = struct.pack(f"<{w}H", *row) * h
    return Image.frombytes("I;16", (w, h), raw)


@functools.lru_cache(maxsize=8)
def _photo_like_image(w: int, h: int, seed: int) -> Image.Image:
    rng = random.Random(seed)
    # Smooth diagonal gradients in each channel (sky/ground-like).
    r = Image.linear_gradient("L").resize((w, h)).rotate(30, expand=False)
    g = Image.radial_gradient("L").resize((w, h))
    b = Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h))
    img = Image.merge("RGB", (r, g, b))
    draw = ImageDraw.Draw(img)
    # Hard-edged shapes: detail that costs bytes and shows sharpness.
    for _ in range(40):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1 = x0 + rng.randrange(max(2, w // 6))
        y1 = y0 + rng.randrange(max(2, h // 6))
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour, outline=(0, 0, 0), width=2)
    for _ in range(30):
        draw.line(
            (rng.randrange(w), rng.randrange(h), rng.randrange(w), rng.randrange(h)),
            fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)),
            width=rng.randrange(1, 4),
        )
    # Sensor-like noise.
    noise = Image.effect_noise((w, h), 18).convert("RGB")
    return Image.blend(img, noise, 0.12)


def photo_like_image(w: int, h: int, *, seed: int = 1) -> Image.Image:
    """An RGB picture with gradients, shapes, thin lines and noise (a copy; cached)."""
    return _photo_like_image(w, h, seed).copy()


def photo_like(w: int, h: int, *, quality: int = 85, seed: int = 1) -> bytes:
    """JPEG bytes of ``photo_like_image``: realistic sizes (~1-2 bits/pixel at q85)."""
    return _save(photo_like_image(w, h, seed=seed), "JPEG", quality=quality)


# --------------------------------------------------------------------------- encoders


def _save(img: Image.Image, fmt: str, **options) -> bytes:
    buf = BytesIO()
    img.save(buf, fmt, **options)
    return buf.getvalue()


def srgb_profile() -> bytes:
    """The bytes of an sRGB ICC profile (littleCMS's built-in)."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def swapped_rgb_profile(*, keep_srgb_name: bool = False) -> bytes:
    """A valid RGB ICC profile whose red and blue colorants are swapped.

    A pixel stored as red *means* blue under this profile, so a converter that honours
    the profile turns red into blue, one that ignores it keeps red. Its description is
    renamed from "sRGB built-in" to "SWAP built-in" unless ``keep_srgb_name`` (a profile
    that only *claims* to be sRGB).
    """
    data = bytearray(srgb_profile())
    if not keep_srgb_name:
        data = bytearray(
            bytes(data).replace("sRGB".encode("utf-16-be"), "SWAP".encode("utf-16-be"))
        )
    count = struct.unpack(">I", data[128:132])[0]
    entries = {}
    for i in range(count):
        pos = 132 + 12 * i
        sig = bytes(data[pos : pos + 4])
        entries[sig] = pos
    r, b = entries[b"rXYZ"], entries[b"bXYZ"]
    data[r + 4 : r + 12], data[b + 4 : b + 12] = data[b + 4 : b + 12], data[r + 4 : r + 12]
    data[84:100] = bytes(16)  # profile ID (MD5) no longer matches: zero means "not set"
    return bytes(data)


def _exif_bytes(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    exif[0x010F] = "TestCam"  # Make: proves metadata stripping removes more than rotation
    return exif.tobytes()


def jpeg_bytes(
    w: int,
    h: int,
    *,
    exif_orientation: int | None = None,
    cmyk: bool = False,
    progressive: bool = False,
    quality: int = 85,
    icc: bool | bytes = False,
    image: Image.Image | None = None,
) -> bytes:
    """A JPEG whose *displayed* picture is ``image`` (default: quadrants) at w by h.

    ``exif_orientation`` stores the pixels inverse-transformed plus the EXIF tag.
    ``cmyk`` stores CMYK (Pillow writes Adobe-style inverted CMYK with an APP14 marker,
    like Photoshop). ``icc=True`` embeds an sRGB profile, ``icc=<bytes>`` that profile.
    """
    img = (image or quadrants(w, h)).convert("RGB")
    if img.size != (w, h):
        img = img.resize((w, h))
    options: dict = {"quality": quality}
    if exif_orientation is not None:
        if exif_orientation in _STORE:
            img = img.transpose(_STORE[exif_orientation])
        options["exif"] = _exif_bytes(exif_orientation)
    if cmyk:
        img = img.convert("CMYK")
    if progressive:
        options["progressive"] = True
    if icc:
        options["icc_profile"] = srgb_profile() if icc is True else icc
    return _save(img, "JPEG", **options)


def mpo_bytes(w: int, h: int) -> bytes:
    """A two-picture MPO (what many cameras write; Pillow opens it via its JPEG plugin)."""
    first = quadrants(w, h)
    second = Image.new("RGB", (w, h), BLACK)
    return _save(first, "MPO", save_all=True, append_images=[second])


def png_bytes(w: int, h: int, mode: str = "RGB", *, transparent: bool = False) -> bytes:
    """A PNG in ``mode``.

    RGB / RGBA / P: quadrants (RGBA: right half transparent; P with ``transparent``:
    right half uses a transparent palette entry). "PA": a palette PNG with per-entry
    alpha (tRNS), the file form of palette+alpha (Pillow cannot write mode PA itself);
    right half transparent. L: quadrants in grey. LA: grey with the right half
    transparent. "I;16": a 0..65535 horizontal gradient (16-bit greyscale PNG).
    """
    if mode == "RGB":
        img = quadrants(w, h)
    elif mode == "RGBA":
        img = with_transparent_right_half(quadrants(w, h))
    elif mode == "P":
        img = quadrants(w, h).quantize(colors=8)
        if transparent:
            return _p_with_transparent_right_half(img)
    elif mode == "PA":
        return _p_with_transparent_right_half(quadrants(w, h).quantize(colors=8), alpha=True)
    elif mode == "L":
        img = quadrants(w, h).convert("L")
    elif mode == "LA":
        img = with_transparent_right_half(quadrants(w, h)).convert("LA")
    elif mode == "I;16":
        img = grey_gradient_16(w, h)
    else:
        raise ValueError(f"unsupported mode {mode!r}")
    return _save(img, "PNG")


def _p_with_transparent_right_half(img: Image.Image, *, alpha: bool = False) -> bytes:
    """Paint the right half with a spare palette index made transparent."""
    used = {index for _, index in img.getcolors()}
    spare = next(i for i in range(256) if i not in used)
    palette = img.getpalette() or []
    palette = palette + [0] * (768 - len(palette))
    palette[spare * 3 : spare * 3 + 3] = [0, 0, 0]  # black under the transparency
    img.putpalette(palette)
    w, h = img.size
    ImageDraw.Draw(img).rectangle((w // 2, 0, w, h), fill=spare)
    if alpha:
        # Per-entry alpha table: every used colour opaque, the spare fully transparent.
        trns = bytes(0 if i == spare else 255 for i in range(spare + 1))
        return _save(img, "PNG", transparency=trns)
    return _save(img, "PNG", transparency=spare)


def _filler(i: int) -> tuple[int, int, int, int]:
    """Solid colours for frames after the first (alternating, so none are merged)."""
    return (255, 0, 255, 255) if i % 2 == 0 else (0, 255, 255, 255)


def gif_bytes(w: int, h: int, frames: int = 1, transparent: bool = False) -> bytes:
    """A GIF: frame 0 is the quadrants picture, later frames solid magenta / cyan.

    ``transparent`` makes the right half of frame 0 a transparent palette index.
    """
    first = quadrants(w, h).quantize(colors=8)
    if transparent:
        first = Image.open(BytesIO(_p_with_transparent_right_half(first)))
        first.load()
    rest = [Image.new("RGB", (w, h), _filler(i)).quantize(colors=2) for i in range(frames - 1)]
    options: dict = {}
    if transparent:
        options["transparency"] = first.info["transparency"]
    if rest:
        options.update(save_all=True, append_images=rest, duration=100, loop=0, disposal=1)
    return _save(first, "GIF", **options)


def webp_bytes(w: int, h: int, *, frames: int = 1, alpha: bool = False) -> bytes:
    """A WebP (lossless, so colours are exact): quadrants; later frames solid magenta / cyan."""
    first = quadrants(w, h)
    if alpha:
        first = with_transparent_right_half(first)
    options: dict = {"lossless": True}
    if frames > 1:
        rest = [Image.new(first.mode, (w, h), _filler(i)) for i in range(frames - 1)]
        options.update(save_all=True, append_images=rest, duration=100, loop=0)
    return _save(first, "WEBP", **options)


def bmp_bytes(w: int, h: int) -> bytes:
    return _save(quadrants(w, h), "BMP")


def tiff_bytes(w: int, h: int) -> bytes:
    return _save(quadrants(w, h), "TIFF")


# --------------------------------------------------------------------------- hostile


def truncated(data: bytes, keep: float = 0.5) -> bytes:
    """The first ``keep`` fraction of ``data`` (a download cut short)."""
    return data[: max(1, int(len(data) * keep))]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def bomb_png(width: int = 20000, height: int = 20000, *, real: bool = False) -> bytes:
    """A small PNG whose header claims ``width`` by ``height`` pixels.

    Default: a valid 1x1 PNG with IHDR rewritten (correct CRC), so only the header lies.
    ``real=True``: a genuinely valid 1-bit greyscale PNG of that size, all zero,
    deflated to a few tens of KB (decoding it would allocate width * height bytes).
    """
    if not real:
        data = bytearray(_save(Image.new("L", (1, 1)), "PNG"))
        # Signature (8) + IHDR length (4) + b"IHDR" (4) = offset 16 of the IHDR body.
        data[16:24] = struct.pack(">II", width, height)
        crc = zlib.crc32(bytes(data[12:29]))  # type + 13-byte body
        data[29:33] = struct.pack(">I", crc)
        return bytes(data)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    parts = []
    block = row * max(1, 1_000_000 // len(row))
    rows_per_block = len(block) // len(row)
    remaining = height
    while remaining > 0:
        n = min(rows_per_block, remaining)
        parts.append(comp.compress(block if n == rows_per_block else row * n))
        remaining -= n
    parts.append(comp.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def svg_bytes() -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<rect width="100" height="100" fill="red"/>'
        b'<script>alert("x")</script></svg>\n'
    )


def html_bytes() -> bytes:
    return (
        b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>"
        b"<body><h1>Not Found</h1><img src='car.jpg'></body></html>\n"
    )


def random_bytes(n: int = 4096, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


# --------------------------------------------------------------------------- sampling


def quadrant_centres(img: Image.Image) -> dict[str, tuple[int, int]]:
    w, h = img.size
    return {
        "top_left": (w // 4, h // 4),
        "top_right": (3 * w // 4, h // 4),
        "bottom_left": (w // 4, 3 * h // 4),
        "bottom_right": (3 * w // 4, 3 * h // 4),
    }


def close(a, b, tolerance: int = 24) -> bool:
    """True when two RGB triples differ by at most ``tolerance`` in every channel."""
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def assert_quadrants(img: Image.Image, tolerance: int = 24) -> None:
    """Assert ``img`` shows the reference picture upright (not mirrored, not rotated)."""
    rgb = img.convert("RGB")
    got = {name: rgb.getpixel(xy) for name, xy in quadrant_centres(rgb).items()}
    bad = {
        name: (got[name], QUADRANTS[name])
        for name in QUADRANTS
        if not close(got[name], QUADRANTS[name], tolerance)
    }
    assert not bad, f"quadrant colours (got, expected): {bad}"

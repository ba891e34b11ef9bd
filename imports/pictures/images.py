"""Decide whether downloaded bytes are an image we accept (SPEC §4), with Pillow only.

The Content-Type a server sends is never trusted: the bytes must open as JPEG, PNG, WebP
or GIF (Pillow is only allowed those four decoders, so SVG, HTML, BMP, TIFF, ICO ... are
refused without being parsed), the header's pixel count must fit the cap *before* any
pixel is decoded, and the picture must then decode completely: the decode the renderer
does anyway (`checked_image`), or a cheap one of its own (`inspect_image`).

No Django imports: the fetcher calls this from worker threads.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO

from PIL import Image, UnidentifiedImageError

from cars.pictures.reasons import ImageReason

from ..fetching import FetchError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

# Pillow format name -> (format we report, file extension). MPO is what Pillow calls a
# multi-picture JPEG (many cameras and phones write one); it is a JPEG file.
_FORMATS = {
    "JPEG": ("JPEG", ".jpg"),
    "MPO": ("JPEG", ".jpg"),
    "PNG": ("PNG", ".png"),
    "WEBP": ("WEBP", ".webp"),
    "GIF": ("GIF", ".gif"),
}

# What a malformed file can make a Pillow decoder raise. Deliberately not `Exception`:
# a programming error here should surface, not be reported as a bad image.
_DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
    ZeroDivisionError,
)


@dataclass(frozen=True)
class ImageInfo:
    format: str  # Pillow format name ("JPEG", "PNG", "WEBP", "GIF")
    width: int
    height: int
    extension: str  # ".jpg", ".png", ".webp", ".gif"


class _ReadWatch(BytesIO):
    """A BytesIO that notices when a decoder asks for bytes past the end of the data.

    A complete file never does: every decoder stops at its end marker. A download cut
    short does, whatever ``ImageFile.LOAD_TRUNCATED_IMAGES`` says (with that flag set
    Pillow silently pads a truncated JPEG with grey and accepts a PNG without its last
    chunks), so counting those reads catches truncation Pillow would hide.
    """

    def __init__(self, data: bytes):
        super().__init__(data)
        self.armed = False
        self.reads_past_end = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        if self.armed and not chunk and size != 0:
            self.reads_past_end += 1
        return chunk


def _dims(width: int, height: int) -> str:
    return f"{width}\N{MULTIPLICATION SIGN}{height}"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:.1f} MP"


def inspect_image(data: bytes, *, max_pixels: int) -> ImageInfo:
    """Decide whether downloaded bytes are an image we accept, whatever the Content-Type said.

    Returns the format, size and file extension; raises like `checked_image`. A JPEG is
    decoded at 1/8 scale (``draft``): libjpeg still entropy-decodes every coefficient,
    so corruption and truncation are found, with 64 times fewer pixels.
    """
    with checked_image(data, max_pixels=max_pixels) as (info, img):
        if info.format == "JPEG":
            img.draft("RGB", (1, 1))
        img.load()
    return info


@contextmanager
def checked_image(data: bytes, *, max_pixels: int) -> Iterator[tuple[ImageInfo, Image.Image]]:
    """The image in `data`, opened and checked from its header, for the caller to decode.

    The caller decodes it (once, as its work needs: a JPEG at any DCT scale) inside the
    block; leaving the block proves the decode was complete. Raises ``FetchError`` with
    ``INVALID_IMAGE`` (not JPEG/PNG/WebP/GIF, zero-size, corrupt or truncated: a decoder
    error inside the block, or a decoder that asked for bytes past the end) or
    ``TOO_MANY_PIXELS`` (the header claims more than ``max_pixels``, refused before any
    pixel is decoded, so a decompression bomb costs nothing).

    Pillow's own ``Image.MAX_IMAGE_PIXELS`` still applies inside ``Image.open``: an image
    over twice that limit (~179 MP by default) raises ``DecompressionBombError``, which
    is reported as ``TOO_MANY_PIXELS`` too. A cap above Pillow's limit therefore needs
    ``Image.MAX_IMAGE_PIXELS`` raised as well.
    """
    if not data:
        raise FetchError(ImageReason.INVALID_IMAGE, "the file is empty")

    stream = _ReadWatch(data)
    # A bomb is refused from the header alone (the warning only when warnings are errors).
    with _decoding(max_pixels, "not a readable JPEG, PNG, WebP or GIF image"):
        try:
            img = Image.open(stream, formats=ACCEPTED_FORMATS)
        except UnidentifiedImageError as exc:
            raise FetchError(
                ImageReason.INVALID_IMAGE, f"not a JPEG, PNG, WebP or GIF image ({_sniff(data)})"
            ) from exc

    with img:
        fmt, extension = _FORMATS.get(img.format or "", (None, None))
        if fmt is None or extension is None:  # pragma: no cover - formats= prevents it
            raise FetchError(ImageReason.INVALID_IMAGE, f"unsupported format {img.format}")

        width, height = img.size
        if width <= 0 or height <= 0:
            raise FetchError(ImageReason.INVALID_IMAGE, f"the image is {_dims(width, height)}")
        pixels = width * height
        if pixels > max_pixels:
            raise FetchError(
                ImageReason.TOO_MANY_PIXELS,
                f"the image is {_dims(width, height)} = {_megapixels(pixels)}, "
                f"which exceeds {_megapixels(max_pixels)}",
            )

        info = ImageInfo(format=fmt, width=width, height=height, extension=extension)
        stream.armed = True
        try:
            with _decoding(max_pixels, f"the {fmt} image data is corrupt"):
                yield info, img
        finally:
            stream.armed = False

        if stream.reads_past_end or getattr(img, "_ended", False):
            raise FetchError(
                ImageReason.INVALID_IMAGE,
                f"the {fmt} image is truncated (its data ends before the picture does)",
            )


@contextmanager
def _decoding(max_pixels: int, corrupt: str) -> Iterator[None]:
    """What a decoder raises, as the reason the picture is refused."""
    try:
        yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FetchError(ImageReason.TOO_MANY_PIXELS, _bomb_message(exc, max_pixels)) from exc
    except _DECODE_ERRORS as exc:
        raise FetchError(ImageReason.INVALID_IMAGE, f"{corrupt} ({exc})") from exc


def _bomb_message(exc: Exception, max_pixels: int) -> str:
    # Pillow's message: "Image size (400000000 pixels) exceeds limit of ...".
    text = str(exc)
    start = text.find("(")
    end = text.find(" pixels)")
    if 0 <= start < end and text[start + 1 : end].isdigit():
        pixels = int(text[start + 1 : end])
        if pixels > max_pixels:
            return f"the image has {_megapixels(pixels)}, which exceeds {_megapixels(max_pixels)}"
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return (
            f"the image has {_megapixels(pixels)}, which exceeds Pillow's "
            f"decompression-bomb limit of {_megapixels(limit)} (Image.MAX_IMAGE_PIXELS)"
        )
    return f"the image has more pixels than allowed ({text})"


def _sniff(data: bytes) -> str:
    """A short guess at what a refused file is, for the import report."""
    head = data[:1024]
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<"):
        if b"<svg" in text:
            return "looks like SVG"
        if b"<html" in text or b"<!doctype html" in text:
            return "looks like HTML"
        return "looks like XML or HTML text"
    signatures = (
        (b"BM", "BMP"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"\x00\x00\x01\x00", "ICO"),
        (b"%PDF", "PDF"),
        (b"8BPS", "Photoshop PSD"),
    )
    for magic, name in signatures:
        if head.startswith(magic):
            return f"looks like {name}"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace").strip()
        return f"looks like an ISO media file ({brand}: HEIC/AVIF/MP4)"
    return "unrecognised data"

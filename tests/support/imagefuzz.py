"""Hostile image bytes for the image fuzz tests: valid seeds of every accepted format, and
the mutations the outside world makes of them (truncation, bit flips, inserted or deleted
bytes, a wrong magic number, and headers that claim huge or zero dimensions).

A mutation is a list of plain ``(kind, where, value)`` operations, so Hypothesis can draw
them (and shrink them) in-process, and a subprocess can replay a seeded corpus of them
(``corpus``) to measure time and memory.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator
from functools import cache

from tests.support.images import gif_bytes, jpeg_bytes, png_bytes, webp_bytes

KINDS = ("flip", "truncate", "insert", "delete", "splice", "magic", "dims")
MAGICS = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"BM")
DIMENSIONS = (0, 1, 2, 255, 256, 7_000, 65_535, 2**24, 2**31 - 1, 2**32 - 1)

Op = tuple[str, float, int]
"""(kind, where in the file as a fraction of its length, a small integer parameter)."""


@cache
def seeds() -> dict[str, bytes]:
    """Small valid files of every accepted format and of the awkward modes."""
    return {
        "jpeg": jpeg_bytes(64, 48),
        "jpeg-progressive": jpeg_bytes(64, 48, progressive=True),
        "jpeg-cmyk-exif": jpeg_bytes(48, 64, cmyk=True, exif_orientation=6),
        "png-rgba": png_bytes(40, 30, mode="RGBA"),
        "png-palette": png_bytes(40, 30, mode="P", transparent=True),
        "png-16bit": png_bytes(40, 30, mode="I;16"),
        "gif-animated": gif_bytes(40, 30, frames=3, transparent=True),
        "webp": webp_bytes(40, 30),
        "webp-animated-alpha": webp_bytes(40, 30, frames=2, alpha=True),
    }


def mutate(data: bytes, ops: list[Op]) -> bytes:
    out = bytearray(data)
    for kind, where, value in ops:
        at = min(len(out), int(where * len(out)))
        if kind == "flip" and at < len(out):
            out[at] ^= 1 << (value % 8)
        elif kind == "truncate":
            del out[max(1, at) :]
        elif kind == "insert":
            out[at:at] = bytes([value % 256]) * (1 + value % 7)
        elif kind == "delete":
            del out[at : at + 1 + value % 64]
        elif kind == "splice":
            out[at : at + 4] = struct.pack("<I", value % 2**32)
        elif kind == "magic":
            magic = MAGICS[value % len(MAGICS)]
            out[: len(magic)] = magic
        elif kind == "dims":
            out = bytearray(
                set_dimensions(bytes(out), DIMENSIONS[value % 10], DIMENSIONS[(value // 10) % 10])
            )
    return bytes(out)


def set_dimensions(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the size a file's header claims (checksums fixed where there are any)."""
    out = bytearray(data)
    if data.startswith(b"\x89PNG") and len(out) >= 33:
        out[16:24] = struct.pack(">II", width % 2**32, height % 2**32)
        out[29:33] = struct.pack(">I", zlib.crc32(bytes(out[12:29])))
    elif data.startswith(b"GIF") and len(out) >= 10:
        out[6:10] = struct.pack("<HH", width % 2**16, height % 2**16)
        descriptor = out.find(b"\x2c", 13)  # the first frame's own size
        if descriptor != -1 and len(out) >= descriptor + 9:
            out[descriptor + 5 : descriptor + 9] = struct.pack("<HH", width % 2**16, height % 2**16)
    elif data.startswith(b"\xff\xd8"):
        for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
            at = out.find(marker)
            if at != -1 and len(out) >= at + 9:
                out[at + 5 : at + 9] = struct.pack(">HH", height % 2**16, width % 2**16)
                break
    elif data[8:12] == b"WEBP":
        at = out.find(b"VP8L")
        if at != -1 and len(out) >= at + 13:
            bits = ((width - 1) % 2**14) | (((height - 1) % 2**14) << 14)
            packed = struct.unpack("<I", out[at + 9 : at + 13])[0] & ~0x0FFFFFFF | bits
            out[at + 9 : at + 13] = struct.pack("<I", packed)
        at = out.find(b"VP8X")
        if at != -1 and len(out) >= at + 18:
            out[at + 12 : at + 15] = ((width - 1) % 2**24).to_bytes(3, "little")
            out[at + 15 : at + 18] = ((height - 1) % 2**24).to_bytes(3, "little")
    return bytes(out)


def corpus(count: int, seed: int) -> Iterator[tuple[str, bytes]]:
    """`count` (name, bytes) mutated images, the same for the same seed."""
    rng = random.Random(seed)
    names = sorted(seeds())
    for index in range(count):
        name = names[index % len(names)]
        ops = [
            (rng.choice(KINDS), rng.random(), rng.randrange(1000)) for _ in range(rng.randint(1, 4))
        ]
        yield f"{name}:{ops}", mutate(seeds()[name], ops)

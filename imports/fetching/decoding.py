"""Content codings, decoded so that a compression bomb is refused at the size cap.

Compressed bodies are decoded here, not by httpx, which inflates each network read whole:
a 1,827-byte answer marked `Content-Encoding: gzip, gzip` became 1 GiB in one step,
before any size cap could count it. `decode` inflates what arrives a bounded step at a
time, so the cap counts decoded bytes and memory stays near the cap (see
`Fetcher._read_capped` in client.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from cars.pictures.reasons import ImageReason

from .errors import FetchError

# Content codings decoded by `decode`, and what every request asks for: brotli and zstd
# would need libraries of their own for little gain on JPEG/PNG and CSV.
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_CODINGS = frozenset({"gzip", "x-gzip"})
_DEFLATE_CODING = "deflate"
_MAX_CODINGS = 5
"""More stacked codings than this are refused (urllib3 2.6 set the same bound after
CVE-2025-66418): each layer costs a decoder, and no honest server needs more than two."""
_DECODE_STEP = 64 * 1024
"""The most any decoding layer inflates at a time: the memory a bomb can claim per step."""


def content_codings(url: httpx.URL, response: httpx.Response) -> list[str]:
    """The codings the body went through, in the order they were applied (RFC 9110
    §8.4), without `identity`; refused unless each is one we decode."""
    names = response.headers.get_list("Content-Encoding", split_commas=True)
    codings = [name.strip().lower() for name in names]
    codings = [coding for coding in codings if coding and coding != "identity"]
    for coding in codings:
        if coding not in _GZIP_CODINGS and coding != _DEFLATE_CODING:
            raise FetchError(
                ImageReason.HTTP_ERROR,
                f"{url}: Content-Encoding {coding!r} was not asked for ({ACCEPT_ENCODING})",
            )
    if len(codings) > _MAX_CODINGS:
        raise FetchError(
            ImageReason.HTTP_ERROR,
            f"{url}: Content-Encoding stacks {len(codings)} content codings "
            f"(at most {_MAX_CODINGS} are decoded)",
        )
    return codings


def capped_raw(url: httpx.URL, response: httpx.Response, limit: int) -> Iterator[bytes]:
    """The body as it arrives, before decoding; over `limit` bytes is `too_large`."""
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > limit:
            raise FetchError(ImageReason.TOO_LARGE, f"{url}: over {limit} bytes on the wire")
        yield chunk


def decode(url: httpx.URL, chunks: Iterator[bytes], codings: Sequence[str]) -> Iterator[bytes]:
    """Undo `codings`, last applied first, each layer handing on at most `_DECODE_STEP`
    bytes at a time: however much a layer would expand to, only one step of it exists
    at once, and the caller may stop asking whenever it has seen enough."""
    for coding in reversed(codings):
        chunks = _inflate(url, chunks, coding)
    return chunks


def _inflate(url: httpx.URL, chunks: Iterator[bytes], coding: str) -> Iterator[bytes]:
    """One gzip or deflate layer, as a stream of steps of at most `_DECODE_STEP` bytes.

    gzip may hold several members one after the other (RFC 1952 §2.2); "deflate" is the
    zlib format, though some servers send a bare deflate stream under that name. A body
    that is cut short or corrupt is an `http_error`: it is not what the server meant.
    """
    decoder: Any = None  # a zlib decompression object, made once the first bytes are in
    head = b""  # the first bytes, until there are enough to tell zlib from bare deflate
    try:
        for chunk in chunks:
            if decoder is None:
                head += chunk
                if len(head) < 2:
                    continue
                decoder, chunk, head = _decompressor(coding, head), head, b""
            elif decoder.eof and chunk:
                decoder = _next_gzip_member(coding)
            yield from _inflate_chunk(decoder, chunk)
            # A new gzip member may begin inside this chunk.
            while decoder.eof and decoder.unused_data:
                rest = decoder.unused_data
                decoder = _next_gzip_member(coding)
                yield from _inflate_chunk(decoder, rest)
        if head:
            raise zlib.error("a one-byte body")
        if decoder is not None and not decoder.eof:
            raise zlib.error("the body ends inside the compressed stream")
    except zlib.error as exc:
        raise FetchError(
            ImageReason.HTTP_ERROR, f"{url}: the {coding} body is corrupt ({exc})"
        ) from None


def _decompressor(coding: str, head: bytes) -> Any:
    if coding in _GZIP_CODINGS:
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    # A zlib header: compression method 8 and a header checksum (RFC 1950 §2.2).
    is_zlib = head[0] & 0x0F == 8 and (head[0] << 8 | head[1]) % 31 == 0
    return zlib.decompressobj(zlib.MAX_WBITS if is_zlib else -zlib.MAX_WBITS)


def _next_gzip_member(coding: str) -> Any:
    if coding not in _GZIP_CODINGS:
        raise zlib.error("data after the end of the deflate stream")
    return zlib.decompressobj(16 + zlib.MAX_WBITS)


def _inflate_chunk(decoder: Any, data: bytes) -> Iterator[bytes]:
    """Everything `data` decodes to (up to the end of its stream), a step at a time."""
    while True:
        out = decoder.decompress(data, _DECODE_STEP)
        if out:
            yield out
        if decoder.eof:
            return  # what follows is in decoder.unused_data
        data = decoder.unconsumed_tail
        if not data and len(out) < _DECODE_STEP:
            return  # all input used, nothing left inside the decoder: wait for more

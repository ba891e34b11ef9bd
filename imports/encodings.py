"""Which encoding a CSV is in, and its physical lines as text (SPEC §3).

Real exports come as UTF-8 (with or without a BOM), as Excel's "Unicode Text" (UTF-16
with a BOM) or in a legacy code page: Excel's "CSV" on Windows writes Windows-1252 in
Western Europe, Russian sites still serve Windows-1251. A BOM decides; else a prefix that
is valid UTF-8 is UTF-8; else charset-normalizer judges the prefix. `--encoding` says it
outright. A line that the chosen encoding cannot decode is fatal and named, so nothing is
imported as mojibake.

No Django here.
"""

import codecs
import re
from collections.abc import Iterator
from typing import BinaryIO

from charset_normalizer import from_bytes

# charset-normalizer reads a bounded prefix; a big file's first MiB is plenty to judge.
PREFIX_BYTES = 1 << 20
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE, whose BOM it starts with
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_ON_A_TIE = ("cp1252",)
# Encodings whose characters are several bytes, among which CR and LF bytes may occur:
# decoded first, then split. Others (checked by _ascii_lines) are split first (faster).
_WIDE = ("utf-16", "utf-32")
_LINE_END = re.compile(r"\r\n|\r|\n")


class EncodingError(Exception):
    """Fatal: the source is not text in any encoding we can tell (one clear line)."""


def detect_encoding(stream: BinaryIO, declared: str | None = None) -> str:
    """The encoding to read `stream` with (a Python codec name); the stream is left at
    its start. `declared` (from `--encoding`) wins, once checked to be a codec."""
    if declared:
        try:
            return codecs.lookup(declared).name
        except LookupError:
            raise EncodingError(f"unknown encoding {declared!r}") from None
    head = stream.read(PREFIX_BYTES)
    stream.seek(0)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    complete = head if len(head) < PREFIX_BYTES else head[: head.rfind(b"\n") + 1] or head
    try:
        complete.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as exc:
        if len(complete) - exc.start < 4 and exc.reason == "unexpected end of data":
            return "utf-8"  # a character cut by the prefix's end
    matches = from_bytes(complete)
    best = matches.best()
    if best is None:
        raise EncodingError("the file is not text in any encoding we can tell; use --encoding")
    # Among the least chaotic candidates (cp1250, cp1252 and cp1257 often tie), the most
    # coherent one; on a tie again, the code page Excel writes in Western Europe, by far
    # the commonest legacy export. best() alone took cp1250 for a French Shopify export.
    least = [match for match in matches if match.chaos == best.chaos]
    chosen = max(least, key=lambda m: (m.coherence, m.encoding in _ON_A_TIE))
    return codecs.lookup(chosen.encoding).name


def decoded_lines(stream: BinaryIO, encoding: str) -> Iterator[str]:
    """The stream's physical lines as text, endings kept (LF, CRLF or a lone CR), decoded
    strictly. NUL characters are dropped: never meaningful in this data, and PostgreSQL
    text columns cannot store them. Raises EncodingError naming the line that failed."""
    if encoding.startswith(_WIDE) or not _ascii_lines(encoding):
        lines = _wide_lines(stream, encoding)
    else:
        lines = _narrow_lines(stream, encoding)
    for text in lines:
        yield text.replace("\x00", "") if "\x00" in text else text


def _ascii_lines(encoding: str) -> bool:
    """Whether CR, LF and the delimiters are the ASCII bytes in this encoding (EBCDIC's
    are not): then the bytes may be split into lines before decoding."""
    try:
        return '\r\n,;\t|"'.encode(encoding) == b'\r\n,;\t|"'
    except (UnicodeError, LookupError):
        return False


def _narrow_lines(stream: BinaryIO, encoding: str) -> Iterator[str]:
    number = 0
    first = True
    for chunk in stream:  # binary streams iterate by LF-terminated lines
        for raw in chunk.splitlines(keepends=True) if b"\r" in chunk else (chunk,):
            number += 1
            if first:
                first = False
                if encoding == "utf-8-sig" or raw.startswith(codecs.BOM_UTF8):
                    raw = raw.removeprefix(codecs.BOM_UTF8)
            try:
                yield raw.decode(encoding)
            except UnicodeDecodeError:
                raise EncodingError(f"not valid {_label(encoding)} (line {number})") from None


def _wide_lines(stream: BinaryIO, encoding: str) -> Iterator[str]:
    """UTF-16/32: decode first, then split (a CR or LF byte may be half a character)."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    number = 1
    rest = ""
    for block in iter(lambda: stream.read(1 << 16), b""):
        try:
            text = rest + decoder.decode(block)
        except UnicodeDecodeError:
            raise EncodingError(f"not valid {_label(encoding)} (line {number})") from None
        # A CR at the end may be the first half of a CRLF: keep it for the next block.
        cut = len(text) - 1 if text.endswith("\r") else len(text)
        lines, rest = _split(text[:cut]), text[cut:]
        if lines and not _LINE_END.search(lines[-1][-1:]):
            rest = lines.pop() + rest
        number += len(lines)
        yield from lines
    try:
        rest += decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise EncodingError(f"not valid {_label(encoding)} (line {number})") from None
    yield from _split(rest)


def _split(text: str) -> list[str]:
    """Lines ending at CRLF, CR or LF, endings kept (not str.splitlines, which also ends
    lines at form feeds and Unicode separators that a CSV field may hold)."""
    lines, start = [], 0
    for match in _LINE_END.finditer(text):
        lines.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        lines.append(text[start:])
    return lines


def _label(encoding: str) -> str:
    return {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "utf-16": "UTF-16", "utf-32": "UTF-32"}.get(
        encoding, encoding
    )

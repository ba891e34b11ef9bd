"""Streaming reader for the cars CSV format (SPEC §3).

The reader turns a byte stream into validated rows one at a time, so a file of a
million rows is never held in memory: only a compact index of the natural keys already
seen is kept, to reject duplicates. Everything that makes the *whole source* unusable
(empty, no header, no ``title`` column, not UTF-8) raises :class:`CsvSourceError`;
everything wrong with a single row becomes a :class:`RejectedRow` and reading goes on.

Pure Python (stdlib ``csv``), no Django, so the importer, the admin upload form and the
tests can all use it directly.
"""

import csv
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import BinaryIO

from imports.pictures.reasons import RowReason

MAX_TITLE_LENGTH = 255
MAX_KEY_LENGTH = 255  # the natural key must fit the car's 255-character key column
FIELD_SIZE_LIMIT = 200 * 1024 * 1024  # one field may be as large as the whole CSV may be

KNOWN_COLUMNS = ("title", "description", "image", "id")
COLUMN_ALIASES = {"image_url": "image", "external_id": "id"}
DELIMITERS = (",", ";", "\t")  # order matters: the first one wins a tie

_UTF8_BOM = b"\xef\xbb\xbf"


class CsvSourceError(Exception):
    """Fatal: the source cannot be read as a cars CSV (message is one clear line)."""


@dataclass(frozen=True, slots=True)
class CsvRow:
    """A valid data row, values stripped, ready to be imported."""

    line: int  # physical line where the record starts; header is line 1
    key: str  # natural key: the id, or "h:" + a hash (see natural_key)
    title: str
    description: str  # "" when the column is missing or empty
    image: str | None  # None when the column is missing or empty


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A data row that is not imported, with the reason code and a readable message."""

    line: int
    reason: RowReason
    message: str


def natural_key(title: str, description: str, image: str | None, external_id: str = "") -> str:
    """Return the key that identifies a row across imports (SPEC §3).

    The external id when there is one, so edits to a row update the same car; otherwise
    a hash of the content, so re-importing an unchanged file creates no duplicates. An
    id too long for the key column is hashed too (same scheme, "h:" prefix).
    """
    if external_id:
        return external_id if len(external_id) <= MAX_KEY_LENGTH else _hashed(external_id)
    return _hashed(json.dumps([title, description, image or ""]))


def _hashed(text: str) -> str:
    return "h:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


class CsvReader:
    """Read a cars CSV from a binary stream, one validated row at a time.

    The header is read and checked in the constructor, so a caller learns that a source
    is unusable before touching the database. Iterating yields :class:`CsvRow` and
    :class:`RejectedRow` objects in file order. The stream is not closed.
    """

    columns: list[str]  # normalised header names (aliases applied), in header order
    unknown_columns: list[str]  # ignored columns (unknown or repeated), as written, once each
    delimiter: str
    has_id: bool
    rows_read: int  # data records seen so far (accepted + rejected)

    def __init__(self, stream: BinaryIO):
        _raise_csv_field_size_limit()
        lines = _decoded_lines(stream)
        blank_lines, first_line = _split_leading_blank_lines(lines)
        if first_line is None:
            raise CsvSourceError("the CSV file is empty")
        self.delimiter = _sniff_delimiter(first_line)
        self._records = csv.reader(
            chain(blank_lines, [first_line], lines), delimiter=self.delimiter
        )
        header = self._read_header(skip=len(blank_lines))
        self.columns, self.unknown_columns, positions = _parse_header(header)
        if not any(self.columns):
            raise CsvSourceError("no header")
        if "title" not in positions:
            raise CsvSourceError(f"no 'title' column (found: {_names_found(header)})")
        self.has_id = "id" in positions
        self._layout = _Layout(
            width=len(header),
            title=positions["title"],
            description=positions.get("description"),
            image=positions.get("image"),
            id=positions.get("id"),
        )
        self._seen_keys = _KeyIndex()
        self.rows_read = 0

    def __iter__(self) -> Iterator[CsvRow | RejectedRow]:
        """Yield each data record in order; blank records are skipped, not counted.

        Raises CsvSourceError when a later part of the stream is not valid UTF-8.
        """
        records = self._records
        while True:
            start = records.line_num + 1  # blank lines come back as [], so this is exact
            try:
                record = next(records)
            except StopIteration:
                return
            except csv.Error as error:
                yield self._malformed(start, error)
                continue
            if _is_blank(record):
                continue
            self.rows_read += 1
            yield self._check(record, start)

    def key_seen(self, key: str) -> bool:
        """Whether an accepted row so far had this natural key (used by --prune)."""
        return self._seen_keys.contains(key)

    def _read_header(self, skip: int) -> list[str]:
        """Return the header record, after the ``skip`` leading blank lines.

        Each blank line is exactly one (empty) record, so the header is the record that
        starts on the first non-blank line, even if all its names are empty.
        """
        try:
            for _ in range(skip):
                next(self._records)
            return next(self._records)
        except csv.Error as error:
            raise CsvSourceError(f"the header cannot be read: {error}") from None

    def _malformed(self, start: int, error: csv.Error) -> RejectedRow:
        """Turn a csv parsing error into a rejected row, or give up if parsing is stuck.

        The csv module resets itself after an error and carries on with the next line,
        so one bad record does not sink the file; if no line was consumed, it would
        fail forever, which makes the source unreadable.
        """
        if self._records.line_num < start:
            raise CsvSourceError(f"the CSV cannot be parsed at line {start}: {error}")
        self.rows_read += 1
        return RejectedRow(start, RowReason.FIELD_COUNT, f"malformed CSV record: {error}")

    def _check(self, record: list[str], line: int) -> CsvRow | RejectedRow:
        """Validate one record against SPEC §3, in the order a user would fix things."""
        layout = self._layout
        if len(record) != layout.width:
            return RejectedRow(
                line,
                RowReason.FIELD_COUNT,
                f"expected {layout.width} fields, found {len(record)}",
            )
        title = record[layout.title].strip()
        if not title:
            return RejectedRow(line, RowReason.MISSING_TITLE, "title is empty")
        if len(title) > MAX_TITLE_LENGTH:
            return RejectedRow(
                line,
                RowReason.TITLE_TOO_LONG,
                f"title has {len(title)} characters (max {MAX_TITLE_LENGTH})",
            )
        description = _value(record, layout.description)
        image = _value(record, layout.image) or None
        external_id = _value(record, layout.id)
        key = natural_key(title, description, image, external_id)
        first_line = self._seen_keys.add(key, line)
        if first_line is not None:
            return RejectedRow(
                line, RowReason.DUPLICATE_KEY, _duplicate_message(external_id, first_line)
            )
        return CsvRow(line, key, title, description, image)


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each known column sits in a record, and how many fields a record has."""

    width: int
    title: int
    description: int | None
    image: int | None
    id: int | None


class _KeyIndex:
    """The natural keys seen so far and their first line, in about 20 bytes per key.

    A dict of key strings costs well over 150 bytes a row (150 MB for a million rows).
    Each key is reduced to a 16-byte blake2b digest and stored with its line number as
    one fixed 20-byte record in one of 4096 bytearray buckets, chosen by the digest's
    first 12 bits; a lookup is a C-speed ``find`` inside one small bucket.
    """

    _RECORD = struct.Struct("<16sI")  # digest, first line
    _BUCKET_BITS = 12

    def __init__(self) -> None:
        self._buckets: list[bytearray | None] = [None] * (1 << self._BUCKET_BITS)

    def add(self, key: str, line: int) -> int | None:
        """Remember ``key`` as first seen on ``line``; if it was seen before, return that line."""
        digest, index = self._locate(key)
        bucket = self._buckets[index]
        if bucket is None:
            bucket = self._buckets[index] = bytearray()
        first_line = self._find(bucket, digest)
        if first_line is None:
            bucket += self._RECORD.pack(digest, line)
        return first_line

    def contains(self, key: str) -> bool:
        digest, index = self._locate(key)
        bucket = self._buckets[index]
        return bucket is not None and self._find(bucket, digest) is not None

    def _locate(self, key: str) -> tuple[bytes, int]:
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=16).digest()
        return digest, int.from_bytes(digest[:2], "big") >> (16 - self._BUCKET_BITS)

    def _find(self, bucket: bytearray, digest: bytes) -> int | None:
        size = self._RECORD.size
        position = bucket.find(digest)
        while position != -1:
            if position % size == 0:  # a match straddling two records is not a match
                return self._RECORD.unpack_from(bucket, position)[1]
            position = bucket.find(digest, position + 1)
        return None


def _raise_csv_field_size_limit() -> None:
    """Allow fields up to the CSV size limit (the stdlib default is only 128 KiB)."""
    if csv.field_size_limit() < FIELD_SIZE_LIMIT:
        csv.field_size_limit(FIELD_SIZE_LIMIT)


def _decoded_lines(stream: Iterable[bytes]) -> Iterator[str]:
    """Yield the stream's physical lines as text, endings kept, decoded strictly.

    Decoding line by line (instead of through a read-ahead TextIOWrapper) lets a
    decoding error name the exact line. Splitting bytes on CR/LF is safe in UTF-8,
    where those bytes never occur inside a multi-byte character. Lines end at LF, CRLF
    or a lone CR, as with universal newlines. NUL characters are dropped: they are
    never meaningful in this data and PostgreSQL text columns cannot store them.
    """
    number = 0
    for chunk in stream:  # binary streams iterate by LF-terminated lines
        for raw in chunk.splitlines(keepends=True) if b"\r" in chunk else (chunk,):
            number += 1
            if number == 1 and raw.startswith(_UTF8_BOM):
                raw = raw[len(_UTF8_BOM) :]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CsvSourceError(f"not valid UTF-8 (line {number})") from None
            yield text.replace("\x00", "") if "\x00" in text else text


def _split_leading_blank_lines(lines: Iterator[str]) -> tuple[list[str], str | None]:
    """Consume lines up to the first non-blank one, returned separately for sniffing.

    The blank lines are returned too, so they still count in the line numbers.
    """
    blank: list[str] = []
    for line in lines:
        if line.strip():
            return blank, line
        blank.append(line)
    return blank, None


def _sniff_delimiter(header_line: str) -> str:
    """Pick the delimiter that splits the header line into the most fields.

    Quotes are respected (a comma inside a quoted name does not count); comma wins
    ties, so a one-column header reads as comma-separated.
    """

    def field_count(delimiter: str) -> int:
        return len(next(csv.reader([header_line], delimiter=delimiter), []))

    return max(DELIMITERS, key=field_count)


def _parse_header(header: list[str]) -> tuple[list[str], list[str], dict[str, int]]:
    """Return (normalised names, ignored names as written, position of each known column).

    Names are compared trimmed and case-insensitively, with aliases applied. The first
    column of each known name is used; unknown or repeated columns are ignored and
    listed once each; columns with an empty name are ignored silently (a trailing
    delimiter in spreadsheet exports).
    """
    columns: list[str] = []
    ignored: list[str] = []
    ignored_names: set[str] = set()
    positions: dict[str, int] = {}
    for index, written in enumerate(header):
        name = written.replace("\ufeff", "").strip().lower()
        name = COLUMN_ALIASES.get(name, name)
        columns.append(name)
        if name in KNOWN_COLUMNS and name not in positions:
            positions[name] = index
        elif name and name not in ignored_names:
            ignored_names.add(name)
            ignored.append(written.strip())
    return columns, ignored, positions


def _names_found(header: list[str], *, limit: int = 200) -> str:
    """The header's names for an error message: one line, and short whatever the file.

    A quoted name may hold newlines (the message must stay one line) or be megabytes
    long (the message is stored on the job and printed).
    """
    names = [" ".join(name.split()) for name in header]
    shown = ", ".join(name if len(name) <= 40 else name[:37] + "..." for name in names if name)
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def _is_blank(record: list[str]) -> bool:
    """True for an empty data line (also whitespace only, or only empty fields)."""
    return not any(field.strip() for field in record)


def _value(record: list[str], position: int | None) -> str:
    return record[position].strip() if position is not None else ""


def _duplicate_message(external_id: str, first_line: int) -> str:
    if external_id:
        shown = external_id if len(external_id) <= 60 else external_id[:57] + "..."
        return f"key '{shown}' already used on line {first_line}"
    return f"same title, description and image as line {first_line}"

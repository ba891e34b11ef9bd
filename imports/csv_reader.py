"""Streaming reader for feeds as people export them (SPEC §3).

The reader turns a byte stream into validated rows one at a time, so a file of a
million rows is never held in memory: only a compact index of the natural keys already
seen is kept, to reject duplicates. Everything that makes the *whole source* unusable
(empty, no header, no title column, not text in the encoding found) raises
:class:`CsvSourceError`; everything wrong with a single row becomes a
:class:`RejectedRow` and reading goes on. The encoding (`encodings`), which column gives
which field (`columns`), what a cell holds (`cells`) and which car a row is
(`natural_keys`) each have a module of their own, and so does reading the header line
(`csv_header`).

Pure Python (stdlib ``csv``), no Django, so the importer, the admin upload form and the
tests can all use it directly.
"""

import csv
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import chain
from typing import BinaryIO

from imports.row_reasons import RowReason

from .cells import html_to_text, looks_like_html, picture_refs, sanitised_html
from .columns import ColumnMap, MappingError, map_columns
from .csv_header import (
    names,
    no_title,
    raise_csv_field_size_limit,
    sniff_delimiter,
    split_leading_blank_lines,
)
from .encodings import EncodingError, decoded_lines, detect_encoding
from .natural_keys import KeyIndex, natural_key

MAX_TITLE_LENGTH = 255
MAX_ATTRIBUTE_CHARS = 1024  # per value (SPEC §3)
SAMPLE_RECORDS = 100  # records read ahead to recognise an image column by its values


class CsvSourceError(Exception):
    """Fatal: the source cannot be read as a cars CSV (message is one clear line)."""


@dataclass(slots=True)
class CsvRow:
    """A valid data row, values stripped, ready to be imported.

    A value: nothing changes a row once made. Not frozen, as a frozen dataclass's
    `__init__` sets each field through `object.__setattr__`, which cost as much as parsing
    the record (one row is made per record).
    """

    line: int  # physical line where the record starts; header is line 1
    key: str  # natural key: the id, or "h:" + a hash (see natural_key)
    title: str
    description: str  # plain text; "" when the column is missing or empty
    images: tuple[str, ...] = ()  # picture references in feed order, each once
    description_html: str | None = None  # sanitised, when the description was HTML
    attributes: dict[str, str] = field(default_factory=dict)  # every other column

    @property
    def image(self) -> str | None:
        """The first picture (the car's `image`), or None."""
        return self.images[0] if self.images else None


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """A data row that is not imported, with the reason code and a readable message."""

    line: int
    reason: RowReason
    message: str


class CsvReader:
    """Read a feed from a binary stream, one validated row at a time.

    The encoding, the header and the mapping are settled in the constructor, so a caller
    learns that a source is unusable before touching the database. Iterating yields
    :class:`CsvRow` and :class:`RejectedRow` objects in file order (a row is yielded
    once the next one shows it is not continued). The stream is not closed.
    """

    encoding: str
    delimiter: str
    mapping: ColumnMap
    has_id: bool
    rows_read: int  # data records seen so far (accepted + rejected)
    warnings: list[str]  # what was not kept, said once reading is done

    def __init__(
        self,
        stream: BinaryIO,
        *,
        encoding: str | None = None,
        columns: Mapping[str, str] | None = None,
        max_pictures: int = 20,
        max_attributes: int = 50,
    ):
        raise_csv_field_size_limit()
        try:
            self.encoding = detect_encoding(stream, encoding)
        except EncodingError as exc:
            raise CsvSourceError(str(exc)) from None
        lines = decoded_lines(stream, self.encoding)
        try:
            blank_lines, first_line = split_leading_blank_lines(lines)
        except EncodingError as exc:
            raise CsvSourceError(str(exc)) from None
        if first_line is None:
            raise CsvSourceError("the CSV file is empty")
        self.delimiter = sniff_delimiter(first_line)
        self._records = csv.reader(
            chain(blank_lines, [first_line], lines), delimiter=self.delimiter
        )
        header = self._read_header(skip=len(blank_lines))
        if not any(name.strip() for name in header):
            raise CsvSourceError("no header")
        self._sample: list[tuple[int, list[str] | csv.Error]] = []
        try:
            self.mapping = map_columns(header, self._read_sample, columns)
        except MappingError as exc:
            raise CsvSourceError(str(exc)) from None
        if "title" not in self.mapping.fields:
            raise CsvSourceError(no_title(header))
        self.has_id = "id" in self.mapping.fields
        getters = self.mapping.fields
        self._get_id, self._get_title = getters.get("id"), getters["title"]
        self._get_description, self._get_image = getters.get("description"), getters.get("image")
        self._width = len(header)
        self._max_pictures = max_pictures
        self._attributes = self.mapping.attributes[:max_attributes]
        self._unnamed_columns = self.mapping.unnamed
        self._attributes_read = bool(self._attributes or self._unnamed_columns)
        self._more_images = self.mapping.more_images
        self._seen_keys = KeyIndex()
        self.rows_read = 0
        self.warnings = []
        if self.mapping.repeated:
            self.warnings.append(
                "columns named twice in the header were not kept (the first of each is): "
                + names(self.mapping.repeated)
            )
        dropped = [name for name, _ in self.mapping.attributes[max_attributes:]]
        if dropped:
            self.warnings.append(
                f"{len(dropped)} columns over the limit of {max_attributes} attributes "
                f"(CARS_MAX_ATTRIBUTES) were not kept: {names(dropped)}"
            )
        self._over_cap = self._truncated = self._continued = self._unnamed = 0
        # A row's hash key is its values whatever the mapping (a new --map template
        # updates the same cars): the columns of title, description and image, then
        # every other column but the id, in header order.
        single = self.mapping.single
        self._key_columns = [single.get(name) for name in ("title", "description", "image")]
        skip = {p for p in single.values()}
        self._other_positions = [p for p in range(len(header)) if p not in skip]

    def __iter__(self) -> Iterator[CsvRow | RejectedRow]:
        """Yield each data record in order; blank records are skipped, not counted.

        Raises CsvSourceError when a later part of the stream cannot be decoded.
        """
        held: _Item | None = None  # with an id column: the last row, until the next
        # shows that it does not continue it
        for start, record in chain(self._sample, self._rest()):
            if isinstance(record, csv.Error):
                checked = self._malformed(start, record)
            else:
                self.rows_read += 1
                checked = self._check(record, start, held)
            if checked is _CONTINUED:
                continue
            if held is not None:
                yield self._finished(held)
                held = None
            if isinstance(checked, _Item):
                if self.has_id:
                    held = checked
                else:
                    yield self._finished(checked)
            else:
                yield checked
        if held is not None:
            yield self._finished(held)
        self._say_what_was_not_kept()

    def key_seen(self, key: str) -> bool:
        """Whether an accepted row so far had this natural key (used by --prune)."""
        return self._seen_keys.contains(key)

    def _rest(self) -> Iterator[tuple[int, list[str] | csv.Error]]:
        """(start line, record or parse error) after the sample, blank records skipped."""
        records = self._records
        while True:
            start = records.line_num + 1  # blank lines come back as [], so this is exact
            try:
                record = next(records)
            except StopIteration:
                return
            except csv.Error as error:
                if records.line_num < start:
                    raise CsvSourceError(
                        f"the CSV cannot be parsed at line {start}: {error}"
                    ) from None
                yield start, error
                continue
            except EncodingError as exc:
                raise CsvSourceError(str(exc)) from None
            if not _is_blank(record):
                yield start, record

    def _read_sample(self) -> list[list[str]]:
        """The first records, read ahead (and replayed by iteration) only when the
        mapping needs values to recognise a column."""
        for item in self._rest():
            self._sample.append(item)
            if len(self._sample) >= SAMPLE_RECORDS:
                break
        return [record for _, record in self._sample if isinstance(record, list)]

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
        except EncodingError as exc:
            raise CsvSourceError(str(exc)) from None

    def _malformed(self, start: int, error: csv.Error) -> RejectedRow:
        """A csv parsing error is a rejected row (the parser resumes on the next line)."""
        self.rows_read += 1
        return RejectedRow(start, RowReason.FIELD_COUNT, f"malformed CSV record: {error}")

    def _check(self, record: list[str], line: int, held: "_Item | None"):
        """Validate one record against SPEC §3, in the order a user would fix things.

        A row with the id of the row before and an empty title continues it (Shopify's
        further pictures and variants): its pictures join that row's.
        """
        if len(record) != self._width:
            return RejectedRow(
                line, RowReason.FIELD_COUNT, f"expected {self._width} fields, found {len(record)}"
            )
        get_id, get_description = self._get_id, self._get_description
        external_id = get_id(record).strip() if get_id else ""
        title = self._get_title(record).strip()
        if not title:
            if held is not None and external_id and _key(external_id) == held.key:
                self._continued += 1
                self._add_pictures(held, record)
                return _CONTINUED
            return RejectedRow(line, RowReason.MISSING_TITLE, "title is empty")
        if len(title) > MAX_TITLE_LENGTH:
            return RejectedRow(
                line,
                RowReason.TITLE_TOO_LONG,
                f"title has {len(title)} characters (max {MAX_TITLE_LENGTH})",
            )
        raw_description = get_description(record).strip() if get_description else ""
        key = external_id and natural_key("", "", None, external_id)
        if not key:
            key = natural_key(*self._key_values(record))
        first_line = self._seen_keys.add(key, line)
        if first_line is not None:
            return RejectedRow(
                line, RowReason.DUPLICATE_KEY, _duplicate_message(external_id, first_line)
            )
        description, description_html = raw_description, None
        if looks_like_html(raw_description):
            description = html_to_text(raw_description)
            description_html = sanitised_html(raw_description) or None
        attributes = self._attribute_values(record) if self._attributes_read else {}
        item = _Item(line, key, title, description, description_html, attributes)
        self._add_pictures(item, record)
        return item

    def _add_pictures(self, item: "_Item", record: list[str]) -> None:
        """The record's pictures join the item's: the image cell's where the feed puts
        them (Shopify's `Image Position`, else in turn), further picture columns after."""
        if self._get_image:
            refs = picture_refs(self._get_image(record))
            if refs:
                place = _position(record, self.mapping.image_position)
                for ref in refs:
                    item.pictures.append((place, len(item.pictures), ref))
        for position in self._more_images:
            item.more += picture_refs(record[position])

    def _finished(self, item: "_Item") -> CsvRow:
        """The row, made once its pictures are all known (one CsvRow a row: making one
        costs as much as reading the record)."""
        images: tuple[str, ...] = ()
        if item.pictures or item.more:
            pictures = item.pictures if len(item.pictures) < 2 else sorted(item.pictures)
            ordered = [ref for _, _, ref in pictures]
            images = self._capped([*ordered, *item.more])
        return CsvRow(
            item.line,
            item.key,
            item.title,
            item.description,
            images,
            item.description_html,
            item.attributes,
        )

    def _capped(self, refs: list[str]) -> tuple[str, ...]:
        """Each reference once, in order, at most `max_pictures` of them."""
        unique = tuple(dict.fromkeys(refs))
        if len(unique) > self._max_pictures:
            self._over_cap += len(unique) - self._max_pictures
            unique = unique[: self._max_pictures]
        return unique

    def _attribute_values(self, record: list[str]) -> dict[str, str]:
        for position in self._unnamed_columns:  # a trailing delimiter's column is empty
            if record[position].strip():
                self._unnamed += 1
        values = {}
        for name, position in self._attributes:
            value = record[position].strip()
            if not value:
                continue
            if len(value) > MAX_ATTRIBUTE_CHARS:
                self._truncated += 1
                value = value[:MAX_ATTRIBUTE_CHARS]
            values[name] = value
        return values

    def _key_values(self, record: list[str]) -> list[str]:
        """The row's values for its hash key (see _key_columns)."""
        values = [record[p].strip() if p is not None else "" for p in self._key_columns]
        return [*values[:3], "", *(record[p].strip() for p in self._other_positions)]

    def _say_what_was_not_kept(self) -> None:
        if self._unnamed:
            self.warnings.append(
                f"{self._unnamed} values in columns with no name in the header were not kept"
            )
        if self._over_cap:
            self.warnings.append(
                f"{self._over_cap} pictures over the limit of {self._max_pictures} per car "
                "(CARS_MAX_PICTURES_PER_CAR) were not kept"
            )
        if self._truncated:
            self.warnings.append(
                f"{self._truncated} attribute values over {MAX_ATTRIBUTE_CHARS} characters "
                "were cut to that length"
            )
        if self._continued:
            self.warnings.append(
                f"{self._continued} rows continued the item above them (same id, no "
                "title): their pictures were added to it, their other columns not kept"
            )


_CONTINUED = object()  # a continuation row: its pictures joined the item above


@dataclass(slots=True)
class _Item:
    """An accepted row while its pictures are gathered (continuation rows add theirs):
    its CsvRow's fields but the pictures."""

    line: int
    key: str
    title: str
    description: str
    description_html: str | None
    attributes: dict[str, str]
    pictures: list[tuple[float, int, str]] = field(default_factory=list)  # (place, turn, ref)
    more: list[str] = field(default_factory=list)


def _position(record: list[str], column: int | None) -> float:
    """Where the feed places a row's picture (a number), or after those it places."""
    if column is None:
        return math.inf
    try:
        return float(record[column])
    except ValueError:
        return math.inf


def _key(external_id: str) -> str:
    return natural_key("", "", None, external_id)


def _is_blank(record: list[str]) -> bool:
    """True for an empty data line (also whitespace only, or only empty fields). One
    join and one strip in C: the fields are all blank exactly when their text is."""
    return not "".join(record).strip()


def _duplicate_message(external_id: str, first_line: int) -> str:
    if external_id:
        shown = external_id if len(external_id) <= 60 else external_id[:57] + "..."
        return f"key '{shown}' already used on line {first_line}"
    return f"same title, description and image as line {first_line}"

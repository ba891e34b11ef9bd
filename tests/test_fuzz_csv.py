"""Fuzzing the CSV reader (SPEC §3) with Hypothesis. Pure Python: no Django needed.

Two kinds of input:

- *Structured*: a header and records drawn from the CSV grammar (any delimiter, quoting,
  line ending, BOM, blank lines, embedded quotes / delimiters / newlines, huge fields,
  rows with too few or too many fields, duplicate keys, long titles), written with the
  stdlib ``csv`` writer. An independent model of SPEC §3 says what must come out of each
  record (accepted with these values, or rejected with this reason, on this line), and
  the reader must agree exactly.
- *Hostile*: arbitrary bytes, mutated valid files (bit flips, truncation, inserted NUL
  bytes, stray quotes), other encodings. The reader must either refuse the whole source
  with ``CsvSourceError`` or yield only accepted rows and rejected rows with a reason:
  never another exception, never a row that breaks the invariants the importer relies on.

``make fuzz`` runs the long campaign (HYPOTHESIS_PROFILE=fuzz); ``make test`` a short
derandomized one (tests/support/fuzzing.py).
"""

import codecs
import io

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from imports.csv_reader import MAX_TITLE_LENGTH, CsvReader, CsvRow, CsvSourceError, RejectedRow
from imports.row_reasons import RowReason
from tests.support.csvfuzz import model, mutated, observed, structured_csv
from tests.support.fuzzing import examples

pytestmark = pytest.mark.fuzz

# --- properties ----------------------------------------------------------------------------


@given(structured_csv())
@example(  # a quoted title that spans a lone-CR line break
    (b'title,id\r\n"a\rb",1\r\nc,2\r\n', ["title", "id"], [(2, ["a\rb", "1"]), (4, ["c", "2"])])
)
def test_structured_files_read_exactly_as_the_spec_says(case):
    data, header, records = case
    expected = model(header, records)
    actual = observed(data)
    if isinstance(expected, str):
        # A header line of delimiters and blanks only is an empty file to the reader.
        accepted = ("no header", "empty") if expected == "no header" else (expected,)
        assert isinstance(actual, str) and any(words in actual for words in accepted), actual
    else:
        assert actual == expected


def _check_invariants(data: bytes) -> None:
    """What the importer relies on, whatever the bytes: one error type, sane rows."""
    try:
        reader = CsvReader(io.BytesIO(data))
        items = list(reader)
    except CsvSourceError as exc:
        message = str(exc)
        assert message and "\n" not in message  # one clear line
        return
    assert reader.rows_read >= len(items)  # continuation rows join the row above
    assert "title" in reader.mapping.fields
    lines = [item.line for item in items]
    assert lines == sorted(lines) and len(set(lines)) == len(lines)
    assert all(line >= 2 for line in lines)
    keys = set()
    for item in items:
        if isinstance(item, RejectedRow):
            assert item.reason in set(RowReason) and item.message
            continue
        assert isinstance(item, CsvRow)
        assert item.title == item.title.strip() and 1 <= len(item.title) <= MAX_TITLE_LENGTH
        assert 1 <= len(item.key) <= 255 and item.key not in keys
        keys.add(item.key)
        assert len(item.images) == len(set(item.images)) <= 20
        for value in (item.title, item.description, *item.images, item.key):
            assert "\x00" not in value  # PostgreSQL text cannot hold NUL


@given(st.binary(max_size=2048))
@example(b"")
@example(b"\xef\xbb\xbf")
@example(b"\x00\x00\x00")
@example(b"title\n\x00")
@example(b'title\n"')
@example(b'title\n"' + b"x" * 200_000)
@example(b"\r\r\r")
@example(b"title,title,TITLE\r\n,,\r\nA,B,C\n")
def test_arbitrary_bytes_are_read_or_refused_never_crash(data):
    _check_invariants(data)


@given(mutated())
def test_mutated_valid_files_are_read_or_refused_never_crash(data):
    _check_invariants(data)


@given(
    st.text(max_size=200),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"]),
)
def test_other_encodings_are_read_or_refused_and_bom_or_utf8_text_exactly(body, encoding):
    """Any encoding is read or refused in one line; text with a BOM (UTF-8, UTF-16,
    UTF-32), or bytes that are valid UTF-8, read exactly as the text they encode."""
    text = "title,description\n" + body
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        assume(False)
    _check_invariants(data)
    exact = encoding in ("utf-8-sig", "utf-16", "utf-32")
    try:
        as_utf8 = data.removeprefix(codecs.BOM_UTF8).decode("utf-8")
        exact = exact or as_utf8 == text
    except UnicodeDecodeError:
        pass
    if exact:
        rows = [r for r in CsvReader(io.BytesIO(data)) if isinstance(r, CsvRow)]
        expected = [r for r in CsvReader(io.BytesIO(text.encode("utf-8"))) if isinstance(r, CsvRow)]
        assert [(r.title, r.description) for r in rows] == [
            (r.title, r.description) for r in expected
        ]


@settings(max_examples=examples(15, 10_000))
@given(st.integers(0, 3), st.sampled_from([b",", b";", b"\t"]), st.integers(1, 3_000_000))
def test_huge_fields_are_read_whole(column, delimiter, size):
    header = delimiter.join([b"title", b"description", b"image", b"id"])
    fields = [b"Golf", b"d", b"", b"1"]
    fields[column] = b"y" * size
    items = list(CsvReader(io.BytesIO(header + b"\n" + delimiter.join(fields) + b"\n")))
    assert len(items) == 1
    item = items[0]
    if column == 0 and size > MAX_TITLE_LENGTH:
        assert item.reason == RowReason.TITLE_TOO_LONG
    else:
        assert isinstance(item, CsvRow)
        assert len((item.title, item.description, item.image, item.key)[column] or "") == (
            size if column != 3 or size <= 255 else 66
        )

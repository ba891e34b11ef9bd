"""Tests of the streaming cars CSV reader (SPEC §3). Pure Python: no Django needed."""

import csv
import hashlib
import io
import json
import time
import tracemalloc
from pathlib import Path

import pytest

from imports.csv_reader import (
    CsvReader,
    CsvRow,
    CsvSourceError,
    RejectedRow,
    natural_key,
)
from imports.row_reasons import RowReason


def read(data: bytes) -> tuple[CsvReader, list[CsvRow | RejectedRow]]:
    reader = CsvReader(io.BytesIO(data))
    return reader, list(reader)


def accepted(rows: list[CsvRow | RejectedRow]) -> list[CsvRow]:
    return [row for row in rows if isinstance(row, CsvRow)]


def rejected(rows: list[CsvRow | RejectedRow]) -> list[tuple[int, RowReason]]:
    return [(row.line, row.reason) for row in rows if isinstance(row, RejectedRow)]


def expected_hash(title: str, description: str = "", image: str = "") -> str:
    """The hash key computed independently of the module, as SPEC'd."""
    text = json.dumps([title, description, image])
    return "h:" + hashlib.sha256(text.encode()).hexdigest()


# --- basic reading -------------------------------------------------------------------


def test_reads_rows_with_stripped_values_and_line_numbers():
    reader, rows = read(
        b"id,title,description,image\n"
        b" a1 ,  Golf  , A small car ,  https://example.com/golf.jpg \n"
        b"a2,Polo,,\n"
    )
    assert rows == [
        CsvRow(2, "a1", "Golf", "A small car", ("https://example.com/golf.jpg",)),
        CsvRow(3, "a2", "Polo", "", ()),
    ]
    assert set(reader.mapping.described) == {"id", "title", "description", "image"}
    assert reader.mapping.attributes == []
    assert reader.delimiter == ","
    assert reader.has_id is True
    assert reader.rows_read == 2


def test_title_only_file_has_empty_description_and_no_image():
    reader, rows = read(b"title\nGolf\n")
    assert rows == [CsvRow(2, expected_hash("Golf"), "Golf", "", ())]
    assert reader.has_id is False
    assert reader.delimiter == ","


def test_header_only_file_yields_nothing():
    reader, rows = read(b"title,description\n")
    assert rows == []
    assert reader.rows_read == 0


def test_reads_a_real_file_from_disk(tmp_path: Path):
    path = tmp_path / "cars.csv"
    path.write_bytes(b"title;image\nGolf;golf.jpg\nPolo;\n")
    with path.open("rb") as stream:
        reader = CsvReader(stream)
        rows = list(reader)
    assert [(row.line, row.title, row.image) for row in accepted(rows)] == [
        (2, "Golf", "golf.jpg"),
        (3, "Polo", None),
    ]


# --- encoding ------------------------------------------------------------------------


def test_utf8_bom_is_tolerated():
    reader, rows = read(b"\xef\xbb\xbftitle,description\nCaf\xc3\xa9,d\xc3\xa9j\xc3\xa0\n")
    assert reader.mapping.described == {"title": "title", "description": "description"}
    assert reader.encoding == "utf-8-sig"
    assert [(row.title, row.description) for row in accepted(rows)] == [("Café", "déjà")]


def test_invalid_utf8_in_header_fails_in_constructor_when_utf8_is_declared():
    with pytest.raises(CsvSourceError, match=r"^not valid UTF-8 \(line 1\)$"):
        CsvReader(io.BytesIO(b"ti\xfftle\nGolf\n"), encoding="utf-8")


def test_a_declared_encoding_names_the_line_it_cannot_decode():
    with pytest.raises(CsvSourceError, match=r"line 2"):
        CsvReader(io.BytesIO(b"\n" + "titl\xe9\n".encode("latin-1")), encoding="utf-8")


def test_invalid_utf8_mid_file_names_the_line_after_yielding_earlier_rows():
    # Past the first 1 MiB that the detection reads, a file taken as UTF-8 must stay so.
    body = b"".join(b"Car %d,d,c.jpg\n" % i for i in range(80_000))
    data = b"title,description,image\n" + body + b"Caf\xe9,d,\nUp,d,\n"
    reader = CsvReader(io.BytesIO(data))
    seen = []
    with pytest.raises(CsvSourceError, match=r"^not valid UTF-8 \(line 80002\)$"):
        for row in reader:
            seen.append(row.title)
    assert len(seen) == 80_000 and seen[-1] == "Car 79999"


def test_invalid_utf8_deep_in_a_large_file_names_the_exact_line():
    body = b"".join(b"Car %d\n" % i for i in range(150_000))
    reader = CsvReader(io.BytesIO(b"title\n" + body + b"bad \xc3\x28\n"))
    with pytest.raises(CsvSourceError, match=r"\(line 150002\)"):
        for _ in reader:
            pass


def test_invalid_utf8_inside_a_quoted_multiline_field_names_its_physical_line():
    data = b'title,description\nGolf,"first\nsecond \xff"\n'
    with pytest.raises(CsvSourceError, match=r"\(line 3\)"):
        list(CsvReader(io.BytesIO(data), encoding="utf-8"))


def test_nul_bytes_do_not_crash_and_are_dropped():
    _, rows = read(b"title,description\nGo\x00lf,a\x00b\nPolo,\x00\n")
    assert [(row.line, row.title, row.description) for row in accepted(rows)] == [
        (2, "Golf", "ab"),
        (3, "Polo", ""),
    ]


def test_nul_only_title_is_missing():
    _, rows = read(b"title\n\x00\x00\nGolf\n")
    # a line holding only NULs is an empty line once they are dropped
    assert [(row.line, row.title) for row in accepted(rows)] == [(3, "Golf")]
    assert rejected(rows) == []


# --- delimiters, quoting, line endings -----------------------------------------------


def test_semicolon_delimiter_is_sniffed_and_commas_stay_in_fields():
    reader, rows = read(b"title;description;image\nGolf, GTI;fast, red;g.jpg\n")
    assert reader.delimiter == ";"
    assert [(row.title, row.description, row.image) for row in accepted(rows)] == [
        ("Golf, GTI", "fast, red", "g.jpg")
    ]


def test_tab_delimiter_is_sniffed():
    reader, rows = read(b"title\tdescription\timage\nGolf; GTI\tfast, red\tg.jpg\n")
    assert reader.delimiter == "\t"
    assert [(row.title, row.description, row.image) for row in accepted(rows)] == [
        ("Golf; GTI", "fast, red", "g.jpg")
    ]


def test_sniffing_respects_quotes():
    # Naively split on ';' this header has 3 fields; as CSV it has 2 comma-separated ones.
    reader, rows = read(b'"a;b;c",title\nx,Golf\n')
    assert reader.delimiter == ","
    assert [name for name, _ in reader.mapping.attributes] == ["a;b;c"]
    assert [row.title for row in accepted(rows)] == ["Golf"]


def test_quoted_fields_with_newlines_and_delimiters_keep_line_numbers():
    reader, rows = read(
        b"title,description\n"  # 1
        b"Golf,plain\n"  # 2
        b'"Polo, 1.2","line one\nline two, with comma"\n'  # 3-4
        b"Up,after\n"  # 5
        b'"Multi\n\nline title",x\n'  # 6-8
        b"Fox,last\n"  # 9
    )
    assert [(row.line, row.title, row.description) for row in accepted(rows)] == [
        (2, "Golf", "plain"),
        (3, "Polo, 1.2", "line one\nline two, with comma"),
        (5, "Up", "after"),
        (6, "Multi\n\nline title", "x"),
        (9, "Fox", "last"),
    ]
    assert reader.rows_read == 5


def test_rejected_row_after_a_multiline_record_has_the_right_line():
    _, rows = read(b'title,description\nGolf,"a\nb"\n,empty title\n')
    assert rejected(rows) == [(4, RowReason.MISSING_TITLE)]


def test_crlf_line_endings():
    reader, rows = read(
        b'Title,Description\r\nGolf,one\r\n\r\nPolo,"two\r\nlines"\r\n,x\r\nUp,three\r\n'
    )
    assert [(row.line, row.title, row.description) for row in accepted(rows)] == [
        (2, "Golf", "one"),
        (4, "Polo", "two\r\nlines"),
        (7, "Up", "three"),
    ]
    assert rejected(rows) == [(6, RowReason.MISSING_TITLE)]
    assert reader.mapping.described == {"title": "Title", "description": "Description"}


def test_lone_cr_line_endings_count_as_lines():
    _, rows = read(b"title\rGolf\r\rPolo\r")
    assert [(row.line, row.title) for row in accepted(rows)] == [(2, "Golf"), (4, "Polo")]


def test_file_without_final_newline():
    _, rows = read(b"title,image\nGolf,g.jpg")
    assert [(row.line, row.image) for row in accepted(rows)] == [(2, "g.jpg")]


def test_blank_lines_are_skipped_but_counted():
    reader, rows = read(b"title,description\n\nGolf,a\n   \n,,\n\nPolo,b\n")
    assert [(row.line, row.title) for row in accepted(rows)] == [(3, "Golf"), (7, "Polo")]
    assert rejected(rows) == []
    assert reader.rows_read == 2


def test_blank_lines_before_the_header_are_counted():
    reader, rows = read(b"\n\r\n  \ntitle\nGolf\n")
    assert reader.mapping.described == {"title": "title"}
    assert [(row.line, row.title) for row in accepted(rows)] == [(5, "Golf")]


# --- header --------------------------------------------------------------------------


def test_header_names_are_case_and_space_insensitive():
    reader, rows = read(b"  TITLE , Description\t,IMAGE \nGolf,d,i\n")
    assert set(reader.mapping.described) == {"title", "description", "image"}
    assert [(row.title, row.description, row.image) for row in accepted(rows)] == [
        ("Golf", "d", "i")
    ]


def test_aliases_image_url_and_external_id():
    reader, rows = read(b"External_ID,title,Image_URL\nx-1,Golf,https://e.x/g.jpg\n")
    assert reader.mapping.described == {"id": "External_ID", "title": "title", "image": "Image_URL"}
    assert reader.has_id is True
    assert rows == [CsvRow(2, "x-1", "Golf", "", ("https://e.x/g.jpg",))]


def test_other_columns_are_attributes_and_repeated_names_are_said():
    reader, rows = read(
        b"Colour,title,price,colour,title,Price,image,image_url\nred,Golf,1,blue,X,2,a,b\n"
    )
    # The first column of a repeated known name is the one used; the second is an
    # attribute like any other column; a name met again is said, not kept.
    assert [(row.title, row.image) for row in accepted(rows)] == [("Golf", "a")]
    assert accepted(rows)[0].attributes == {
        "Colour": "red",
        "price": "1",
        "title": "X",
        "image_url": "b",
    }
    assert reader.mapping.repeated == ["colour", "Price"]
    assert any("colour, Price" in warning for warning in reader.warnings)


def test_columns_with_empty_names_are_ignored_silently():
    reader, rows = read(b"title,description,\nGolf,d,\nPolo,e,extra\n")
    assert reader.mapping.attributes == []
    assert [row.title for row in accepted(rows)] == ["Golf", "Polo"]


@pytest.mark.parametrize(
    "data",
    [b"", b"\xef\xbb\xbf", b"\n\n\n", b"  \n\t\n \r\n", b"\xef\xbb\xbf\r\n  \r\n"],
    ids=["zero-bytes", "bom-only", "blank-lines", "whitespace-lines", "bom-and-blank"],
)
def test_empty_file_is_fatal(data: bytes):
    with pytest.raises(CsvSourceError, match=r"^the CSV file is empty$"):
        CsvReader(io.BytesIO(data))


def test_header_without_names_is_fatal():
    with pytest.raises(CsvSourceError, match=r"^no header$"):
        CsvReader(io.BytesIO(b",,\nGolf,a,b\n"))


def test_missing_title_column_is_fatal_and_names_the_columns_found():
    with pytest.raises(
        CsvSourceError,
        match=r"^no 'title' column \(found: Marke, Image\); try --map \"title=Marke\"$",
    ):
        CsvReader(io.BytesIO(b"Marke, Image\nGolf,g.jpg\n"))


def test_header_errors_are_raised_before_iteration():
    stream = io.BytesIO(b"marke\n" + b"x\n" * 1000)
    with pytest.raises(CsvSourceError):
        CsvReader(stream)


# --- row rejections ------------------------------------------------------------------


def test_missing_title_is_rejected_with_its_line():
    _, rows = read(b"title,description\nGolf,a\n,no title\n   ,blank title\nPolo,b\n")
    assert rejected(rows) == [(3, RowReason.MISSING_TITLE), (4, RowReason.MISSING_TITLE)]
    assert rows[1].message == "title is empty"
    assert [row.title for row in accepted(rows)] == ["Golf", "Polo"]


def test_title_longer_than_255_characters_is_rejected():
    ok, too_long = "é" * 255, "x" * 300
    data = f"title\n{ok}\n{too_long}\n  {'y' * 255}  \n".encode()
    _, rows = read(data)
    assert [(row.line, row.title) for row in accepted(rows)] == [(2, ok), (4, "y" * 255)]
    assert rows[1] == RejectedRow(3, RowReason.TITLE_TOO_LONG, "title has 300 characters (max 255)")


def test_wrong_number_of_fields_is_rejected():
    _, rows = read(b"title,description,image\nGolf,a,b\nPolo,a\nUp,a,b,c,d\nFox,a,b\n")
    assert rows[1] == RejectedRow(3, RowReason.FIELD_COUNT, "expected 3 fields, found 2")
    assert rows[2] == RejectedRow(4, RowReason.FIELD_COUNT, "expected 3 fields, found 5")
    assert [row.title for row in accepted(rows)] == ["Golf", "Fox"]


def test_field_count_is_checked_before_the_title():
    _, rows = read(b"title,description\n,a,b\n")
    assert rejected(rows) == [(2, RowReason.FIELD_COUNT)]


def test_duplicate_id_rejects_the_later_row_and_names_the_first_line():
    reader, rows = read(b"id,title\na1,Golf\na2,Polo\na1,Golf again\n a2 ,Polo again\n")
    assert [(row.line, row.key, row.title) for row in accepted(rows)] == [
        (2, "a1", "Golf"),
        (3, "a2", "Polo"),
    ]
    assert rows[2] == RejectedRow(4, RowReason.DUPLICATE_KEY, "key 'a1' already used on line 2")
    assert rows[3] == RejectedRow(5, RowReason.DUPLICATE_KEY, "key 'a2' already used on line 3")
    assert reader.rows_read == 4


def test_duplicate_content_without_id_is_rejected():
    _, rows = read(b"title,description,image\nGolf,a,g.jpg\nGolf,a,other.jpg\n Golf , a , g.jpg \n")
    assert [row.line for row in accepted(rows)] == [2, 3]
    assert rows[2] == RejectedRow(
        4, RowReason.DUPLICATE_KEY, "same title, description and image as line 2"
    )


def test_key_of_a_rejected_row_does_not_count_as_seen():
    _, rows = read(b"id,title,description\na1,,first has no title\na1,Golf,kept\n")
    assert rejected(rows) == [(2, RowReason.MISSING_TITLE)]
    assert [(row.line, row.key) for row in accepted(rows)] == [(3, "a1")]


def test_duplicates_are_found_among_many_keys():
    lines = [b"id,title"] + [b"k%d,Car %d" % (i, i) for i in range(20_000)]
    lines += [b"k12345,again", b"k0,again", b"k19999,again", b"k20000,new"]
    _, rows = read(b"\n".join(lines) + b"\n")
    assert [(row.line, row.message) for row in rows if isinstance(row, RejectedRow)] == [
        (20_002, "key 'k12345' already used on line 12347"),
        (20_003, "key 'k0' already used on line 2"),
        (20_004, "key 'k19999' already used on line 20001"),
    ]
    assert len(accepted(rows)) == 20_001


def test_malformed_record_is_rejected_and_reading_continues():
    data = b"title,description,image\nGolf,a,\nPolo," + b"x" * 50 + b",\nUp,b,\n"
    reader = CsvReader(io.BytesIO(data))
    previous = csv.field_size_limit(20)  # provoke csv.Error on the long field
    try:
        rows = list(reader)
    finally:
        csv.field_size_limit(previous)
    assert [row.line for row in accepted(rows)] == [2, 4]
    assert rejected(rows) == [(3, RowReason.FIELD_COUNT)]
    assert rows[1].message.startswith("malformed CSV record: field larger than field limit")
    assert reader.rows_read == 3


# --- natural keys --------------------------------------------------------------------


def test_hash_key_is_the_spec_hash_of_the_stripped_values():
    _, rows = read(b"title,description,image\n Golf , small , g.jpg \nPolo,,\n")
    assert [row.key for row in accepted(rows)] == [
        expected_hash("Golf", "small", "g.jpg"),
        expected_hash("Polo", "", ""),
    ]


def test_hash_key_is_stable_across_runs_and_files(tmp_path: Path):
    data = b"title,description,image\nGolf,small,g.jpg\n"
    path = tmp_path / "again.csv"
    path.write_bytes(b"\xef\xbb\xbfImage;Title;Description\r\ng.jpg;Golf;small\r\n")
    with path.open("rb") as stream:
        from_file = [row.key for row in CsvReader(stream)]
    first = [row.key for row in read(data)[1]]
    second = [row.key for row in read(data)[1]]
    assert first == second == from_file
    assert first == [expected_hash("Golf", "small", "g.jpg")]


def test_without_an_id_every_column_is_part_of_the_key():
    _, rows = read(b"title,description,image,extra\nGolf,small,g.jpg,x\nGolf,small,g.jpg,y\n")
    assert len(accepted(rows)) == 2, "rows that differ in any column stay distinct"
    text = json.dumps(["Golf", "small", "g.jpg", "x"])
    assert accepted(rows)[0].key == "h:" + hashlib.sha256(text.encode()).hexdigest()


def test_hash_key_changes_when_any_field_changes():
    _, rows = read(
        b"title,description,image\n"
        b"Golf,small,g.jpg\n"
        b"Golf2,small,g.jpg\n"
        b"Golf,small2,g.jpg\n"
        b"Golf,small,g2.jpg\n"
        b"Golf,small,\n"
        b'"Golf,small",,g.jpg\n'
    )
    keys = [row.key for row in accepted(rows)]
    assert len(keys) == 6
    assert len(set(keys)) == 6


def test_missing_image_column_hashes_like_an_empty_image():
    _, with_column = read(b"title,image\nGolf,\n")
    _, without_column = read(b"title\nGolf\n")
    assert with_column[0].key == without_column[0].key == expected_hash("Golf")


def test_empty_id_falls_back_to_the_hash():
    _, rows = read(b"id,title,description\n,Golf,a\n  ,Polo,b\nx,Up,c\n,Golf,a\n")
    assert [(row.line, row.key) for row in accepted(rows)] == [
        (2, expected_hash("Golf", "a")),
        (3, expected_hash("Polo", "b")),
        (4, "x"),
    ]
    assert rows[3] == RejectedRow(
        5, RowReason.DUPLICATE_KEY, "same title, description and image as line 2"
    )


def test_id_longer_than_255_characters_is_hashed():
    long_id, max_id = "i" * 256, "m" * 255
    _, rows = read(f"id,title\n{long_id},Golf\n{max_id},Polo\n{long_id},Again\n".encode())
    expected = "h:" + hashlib.sha256(long_id.encode()).hexdigest()
    assert [row.key for row in accepted(rows)] == [expected, max_id]
    assert rows[2].reason == RowReason.DUPLICATE_KEY
    assert rows[2].message == f"key '{'i' * 57}...' already used on line 2"


def test_natural_key_function():
    assert natural_key("Golf", "", None, "a1") == "a1"
    assert natural_key("Golf", "d", "i") == expected_hash("Golf", "d", "i")
    assert natural_key("Golf", "", None) == natural_key("Golf", "", "")


# --- size and streaming --------------------------------------------------------------


def test_very_long_field_is_read():
    description = "d" * 1_000_000  # far beyond the stdlib's default 128 KiB field limit
    _, rows = read(f'title,description\nGolf,"{description}"\nPolo,x\n'.encode())
    assert [(row.line, len(row.description)) for row in accepted(rows)] == [
        (2, 1_000_000),
        (3, 1),
    ]


def test_rows_are_yielded_lazily():
    body = b"".join(b"Car %d,d\n" % i for i in range(100_000))
    stream = io.BytesIO(b"title,description\n" + body)
    first = next(iter(CsvReader(stream)))
    assert first.title == "Car 0"
    # only the first lines were consumed: the records read ahead to look for an image
    # column by its values (none is named here), and no more
    assert stream.tell() < 20 + 12 * 100


def test_200k_row_file_streams_in_bounded_memory(tmp_path: Path):
    path = tmp_path / "big.csv"
    with path.open("wb") as out:
        out.write(b"id,title,description,image\n")
        for i in range(200_000):
            out.write(b"k%d,Car %d,A fine car number %d,https://e.x/%d.jpg\n" % (i, i, i, i))
    started = time.monotonic()
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            reader = CsvReader(stream)
            count = 0
            last = None
            for row in reader:
                assert isinstance(row, CsvRow)
                count += 1
                last = row
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == reader.rows_read == 200_000
    assert last == CsvRow(
        200_001, "k199999", "Car 199999", "A fine car number 199999", ("https://e.x/199999.jpg",)
    )
    assert peak < 16 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert time.monotonic() - started < 30

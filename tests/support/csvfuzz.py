"""Hypothesis strategies for CSV files, and an independent model of SPEC §3.

Used by the reader fuzz tests (tests/test_fuzz_csv.py) and the importer fuzz tests
(tests/test_fuzz_import.py).
"""

import codecs
import hashlib
import io
import json
import re
from dataclasses import dataclass

from hypothesis import strategies as st

from imports.cells import html_to_text, looks_like_html, picture_refs
from imports.csv_reader import MAX_TITLE_LENGTH, CsvReader, CsvRow, CsvSourceError
from imports.row_reasons import RowReason

# --- the model ---------------------------------------------------------------------------
# Written again from SPEC §3, not from the module: which column gives which field, keys,
# rejections and continuation rows. What one cell holds (a list of pictures, HTML) is the
# cells module's, tested on its own (tests/test_cells.py), and taken from there.

KNOWN = {"title": "title", "description": "description", "image": "image", "id": "id"}
KNOWN.update({"image_url": "image", "external_id": "id"})
FIELDS = ("id", "title", "description", "image")
MAX_PICTURES = 20
_PICTURE_URL = re.compile(
    r"^https?://\S+?(\.(jpe?g|png|webp|gif|avif)([?#]\S*)?$|/(images?|img|photos?|pictures?)/)",
    re.IGNORECASE,
)


def model_key(title: str, description: str, image: str, external_id: str, *others: str) -> str:
    """SPEC §3's natural key, written again from the spec (not imported from the module)."""
    if external_id:
        if len(external_id) <= 255:
            return external_id
        return "h:" + hashlib.sha256(external_id.encode()).hexdigest()
    text = json.dumps([title, description, image, *others])
    return "h:" + hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class Expected:
    line: int
    reason: RowReason | None  # None: accepted
    values: tuple[str, str, tuple[str, ...]] | None = None  # title, description, pictures


def model(header: list[str], records: list[tuple[int, list[str]]]) -> list[Expected] | str:
    """What SPEC §3 says comes out of `records` ((line, fields) in file order), or the
    reason the whole source is refused."""
    positions: dict[str, int] = {}
    names = [written.strip().lower() for written in header]
    for alias in KNOWN:  # the earlier alias wins (id before external_id), then the column
        if alias in names and KNOWN[alias] not in positions:
            positions[KNOWN[alias]] = names.index(alias)
    if not any(name.strip() for name in header):
        return "no header"
    if "title" not in positions:
        return "no 'title' column"
    if "image" not in positions:
        guessed = _image_by_values(header, records, set(positions.values()))
        if guessed is not None:
            positions["image"] = guessed
    used = set(positions.values())
    seen: set[str] = set()
    out: list[Expected] = []
    last: int | None = None  # index in `out` of the row a continuation row may continue
    for line, fields in records:
        if not any(field.strip() for field in fields):
            continue  # a blank record is skipped, not counted
        if len(fields) != len(header):
            out.append(Expected(line, RowReason.FIELD_COUNT))
            last = None
            continue

        def value(name: str, fields=fields) -> str:
            return fields[positions[name]].strip() if name in positions else ""

        title, external_id, image = value("title"), value("id"), value("image")
        pictures = picture_refs(image)
        if not title:
            previous = out[last] if last is not None else None
            if previous and external_id and model_key("", "", "", external_id) == previous.key:
                ptitle, pdescription, ppictures = previous.values
                merged = tuple(dict.fromkeys([*ppictures, *pictures]))[:MAX_PICTURES]
                values = (ptitle, pdescription, merged)
                out[last] = _Accepted(previous.line, None, values, key=previous.key)
                continue
            out.append(Expected(line, RowReason.MISSING_TITLE))
            last = None
            continue
        if len(title) > MAX_TITLE_LENGTH:
            out.append(Expected(line, RowReason.TITLE_TOO_LONG))
            last = None
            continue
        description = value("description")
        others = [] if external_id else [f.strip() for i, f in enumerate(fields) if i not in used]
        key = model_key(title, description, image, external_id, *others)
        if key in seen:
            out.append(Expected(line, RowReason.DUPLICATE_KEY))
            last = None
            continue
        seen.add(key)
        if looks_like_html(description):
            description = html_to_text(description)
        pictures = tuple(dict.fromkeys(pictures))[:MAX_PICTURES]
        out.append(
            _Accepted(line=line, reason=None, values=(title, description, pictures), key=key)
        )
        last = len(out) - 1 if "id" in positions else None
    return [Expected(e.line, e.reason, e.values) for e in out]


@dataclass(frozen=True)
class _Accepted(Expected):
    key: str = ""


def _image_by_values(header, records, used: set[int]) -> int | None:
    """SPEC §3: a column matching no name whose non-empty values are mostly picture URLs
    (among the first 100 records that are not blank)."""
    sample = [f for _, f in records if any(x.strip() for x in f)][:100]
    best, best_share = None, 0.5
    for position in range(len(header)):
        if position in used:
            continue
        values = [f[position].strip() for f in sample if position < len(f) and f[position].strip()]
        if not values:
            continue
        hits = 0
        for text in values:
            refs = picture_refs(text)
            hits += bool(refs) and all(_PICTURE_URL.match(ref) for ref in refs)
        if hits / len(values) > best_share:
            best, best_share = position, hits / len(values)
    return best


def observed(data: bytes) -> list[Expected] | str:
    try:
        reader = CsvReader(io.BytesIO(data))
        items = list(reader)
    except CsvSourceError as exc:
        return str(exc)
    return [
        Expected(item.line, None, (item.title, item.description, item.images))
        if isinstance(item, CsvRow)
        else Expected(item.line, item.reason)
        for item in items
    ]


# --- strategies ----------------------------------------------------------------------------

HEADER_NAMES = st.one_of(
    st.sampled_from(list(KNOWN)).flatmap(
        lambda name: st.sampled_from([name, name.upper(), name.title(), f" {name} "])
    ),
    st.sampled_from(["colour", "price", "Year", "", "notes", "titles", "img"]),
)

# Everything that is hard for a CSV parser, plus ordinary and non-ASCII text. No NUL in
# the structured files: the reader drops NULs (PostgreSQL cannot store them), which the
# hostile tests cover.
TRICKY = st.sampled_from(
    [",", ";", "\t", '"', '""', "\n", "\r\n", "\r", " ", "\u00a0", "\ufeff", "\u2028", "'"]
)
# Image references the importer fuzz tests lay out on disk (tests/test_fuzz_import.py):
# a good picture, a corrupt one, missing, escaping the folder, refused schemes, and a
# loopback port where nothing listens.
IMAGE_REFS = [
    "img/ok.png",
    " img/ok.png ",
    "img/bad.jpg",
    "img/missing.jpg",
    "../outside.png",
    "img/../../outside.png",
    "/etc/passwd",
    "ftp://127.0.0.1/x.png",
    "file:///etc/passwd",
    "http://127.0.0.1:9/x.jpg",
]
TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
)
FIELD = st.one_of(
    TEXT,
    st.lists(st.one_of(TEXT, TRICKY), max_size=6).map("".join),
    st.sampled_from(["", " ", "Golf", "Polo GTI"]),
    st.sampled_from(IMAGE_REFS),
    # a title just under, at and over the limit, and a huge field
    st.sampled_from([254, 255, 256, 300, 70_000, 300_000]).map(lambda n: "x" * n),
)
IDS = st.sampled_from(["1", "2", "3", " 1 ", "a", "", "x" * 300, "x" * 300 + "y"])


@st.composite
def structured_csv(draw):
    """(bytes, header, records with their first physical line)."""
    header = draw(st.lists(HEADER_NAMES, min_size=1, max_size=6))
    if not any(name.strip() for name in header):
        header.append("notes")  # a blank header line is skipped like any leading blank line
    if draw(st.booleans()) and not any(KNOWN.get(n.strip().lower()) == "title" for n in header):
        header.insert(draw(st.integers(0, len(header))), "title")
    width = len(header)
    # With one column, every delimiter splits the header into one field: comma wins.
    delimiter = "," if width == 1 else draw(st.sampled_from([",", ";", "\t"]))
    id_column = next(
        (i for i, n in enumerate(header) if KNOWN.get(n.strip().lower()) == "id"), None
    )
    records = []
    for _ in range(draw(st.integers(0, 8))):
        size = draw(st.sampled_from([width] * 6 + [max(1, width - 1), width + 1]))
        fields = draw(st.lists(FIELD, min_size=size, max_size=size))
        if id_column is not None and id_column < size and draw(st.booleans()):
            fields[id_column] = draw(IDS)
        if records and draw(st.integers(0, 5)) == 0:
            fields = list(draw(st.sampled_from(records)))  # an exact duplicate row
        records.append(fields)
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    quote_all = draw(st.booleans())

    def render(row: list[str]) -> str:
        # RFC 4180 quoting. Not the stdlib writer: it leaves a lone CR unquoted when the
        # line terminator is "\n", which every reader (this one too) takes as a line end.
        special = (delimiter, '"', "\r", "\n")
        return (
            delimiter.join(
                '"' + field.replace('"', '""') + '"'
                if quote_all or any(c in field for c in special) or row == [""]
                else field
                for field in row
            )
            + terminator
        )

    text = terminator * draw(st.integers(0, 2)) + render(header)
    placed = []
    for fields in records:
        text += terminator * draw(st.sampled_from([0, 0, 0, 1, 2]))
        line = len(text.encode().splitlines()) + 1  # lines before it, header included
        placed.append((line, fields))
        text += render(fields)
    if records and draw(st.booleans()):
        text = text[: -len(terminator)]  # no newline at the end of the file
    data = text.encode()
    if draw(st.booleans()):
        data = codecs.BOM_UTF8 + data
    return data, header, placed


VALID = (
    b'id,title,description,image\n1,Golf,"a, b",img/a.jpg\n2,Polo,"multi\nline",\n'
    b'3,"Up ""quoted""",x,http://127.0.0.1:1/a.png\n'
)


@st.composite
def mutated(draw, base: bytes = VALID):
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        position = draw(st.integers(0, len(data)))
        if kind == "flip" and position < len(data):
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "insert":
            data[position:position] = draw(
                st.sampled_from([b"\x00", b'"', b"\r", b"\n", b",", b";", b"\xff", b"\xef\xbb\xbf"])
            )
        elif kind == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif kind == "truncate":
            del data[position:]
        elif kind == "splice":
            data[position:position] = draw(st.binary(max_size=16))
    return bytes(data)

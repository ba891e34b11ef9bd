"""Real-world feeds, imported as they come (SPEC §3 and §4, issue #24).

Every file in tests/feeds/ was published by someone else (Shopify, WooCommerce,
PrestaShop, a Google Vehicle Ads feed, a Google Merchant Center feed, scrapers of
Ukrainian and Russian shops and car sites; sources in tests/feeds/README.md) and is kept
byte for byte. What each feed *should* give is worked out here from the file itself with
the stdlib `csv` module and the format's own rules (Shopify's `Image Position`, Google's
`additional_image_link`, WooCommerce's comma lists, ...), never from the code under test.

Reader level: CsvReader on the bytes. Import level: `manage.py import_csv` against the
real test database, with every picture served by a real HTTP server on 127.0.0.1 (the
feed is copied with the picture hosts pointed at it; the copy is the only change). Excel's
"CSV" (Windows-1252, CRLF) and "Unicode Text" (UTF-16LE + BOM, tabs) forms of the feeds
are made here from the UTF-8 files, as Excel writes them.

The whole picture list is checked on CsvRow.images, and the import checks that every
picture of every car is stored, in feed order, the first as the car's own.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.core.management import call_command

from cars.models import Car, ImageStatus
from imports.csv_reader import CsvReader, CsvRow, RejectedRow
from tests.support.images import jpeg_bytes

FEEDS = Path(__file__).parent / "feeds"


# --------------------------------------------------------------------------- what a feed says


@dataclass(frozen=True)
class Item:
    """One car as the feed means it (Shopify: a product with its continuation rows)."""

    line: int  # physical line of its first record (header = line 1)
    key: str | None  # the feed's own id; None when the feed has none (keyed by content)
    title: str
    pictures: tuple[str, ...]  # every picture, feed order, each once
    description: str  # the cell as written (HTML or not)
    record: dict[str, str]  # its first record, column -> value


@dataclass(frozen=True)
class Expected:
    items: list[Item]
    rejected: list[tuple[int, str]]  # (line, reason)


Record = tuple[int, dict[str, str]]


def read_records(path: Path, delimiter: str) -> list[Record]:
    """(start line, column -> value) for every record after the header."""
    text = path.read_bytes().decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader)
    records, start = [], reader.line_num + 1
    for values in reader:
        assert len(values) == len(header), f"{path.name} line {start} is not a full record"
        records.append((start, dict(zip(header, values, strict=True))))
        start = reader.line_num + 1
    return records


def once(urls) -> tuple[str, ...]:
    return tuple(dict.fromkeys(u.strip() for u in urls if u.strip()))


def comma_list(cell: str) -> list[str]:
    return [u for u in cell.split(",") if u.strip()]


def shopify(records: list[Record]) -> Expected:
    """A product is its first row (with a Title) plus the rows with its Handle and no
    Title. Its pictures: the `Image Src` values in `Image Position` order (row order when
    the export has no such column), then any `Variant Image` not among them."""
    products: dict[str, dict] = {}
    order: list[str] = []
    for line, record in records:
        handle = record["Handle"]
        if record["Title"].strip():
            assert handle not in products, f"line {line}: handle {handle} seen before"
            products[handle] = {"line": line, "record": record, "src": [], "variant": []}
            order.append(handle)
        product = products[handle]
        if record["Image Src"].strip():
            position = record.get("Image Position", "").strip()
            rank = int(position) if position else len(product["src"]) + 1
            product["src"].append((rank, record["Image Src"]))
        product["variant"].append(record["Variant Image"])
    items = []
    for handle in order:
        product = products[handle]
        ranked = [url for _, url in sorted(product["src"], key=lambda p: p[0])]
        record = product["record"]
        items.append(
            Item(
                product["line"],
                handle,
                record["Title"].strip(),
                once(ranked + product["variant"]),
                record["Body (HTML)"],
                record,
            )
        )
    return Expected(items, [])


def one_row_per_item(
    key: str | None,
    title: Callable[[dict], str],
    pictures: Callable[[dict], list[str]],
    description: str | None,
) -> Callable[[list[Record]], Expected]:
    """Feeds where each record is one item. Without an id column an item is keyed by all
    its values, so a record repeating an earlier one is a duplicate; an empty title is
    rejected."""

    def expected(records: list[Record]) -> Expected:
        items, rejected, seen = [], [], set()
        for line, record in records:
            name = title(record).strip()
            if not name:
                rejected.append((line, "missing_title"))
                continue
            if key is None:
                values = tuple(v.strip() for v in record.values())
                if values in seen:
                    rejected.append((line, "duplicate_key"))
                    continue
                seen.add(values)
            items.append(
                Item(
                    line,
                    record[key].strip() if key else None,
                    name,
                    once(pictures(record)),
                    record[description] if description else "",
                    record,
                )
            )
        return Expected(items, rejected)

    return expected


def column(name: str) -> Callable[[dict], str]:
    return lambda record: record[name]


def no_pictures(record: dict) -> list[str]:
    return []


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Feed:
    file: str
    delimiter: str
    expected: Callable[[list[Record]], Expected]
    columns: dict[str, str] = field(default_factory=dict)  # --map, only where one is needed
    picture_hosts: tuple[str, ...] = ()  # scheme://host of its pictures
    html: bool = False  # descriptions written in HTML
    words: tuple[str, ...] = ()  # text that must come out exactly so (accents, Cyrillic)
    attributes: dict[int, dict[str, str]] = field(default_factory=dict)  # item -> columns
    mapping: tuple[str, ...] = ()  # stderr lines of the import

    @property
    def path(self) -> Path:
        return FEEDS / self.file

    @property
    def options(self) -> list[str]:
        return [f"--map={name}={spec}" for name, spec in self.columns.items()]

    def expect(self) -> Expected:
        return self.expected(read_records(self.path, self.delimiter))

    def __str__(self) -> str:
        return self.file


SHOPIFY_TEMPLATE = Feed(
    "shopify_product_template.csv",
    ",",
    shopify,
    picture_hosts=("https://burst.shopifycdn.com",),
    html=True,
    words=("it's made right here in our store",),
    attributes={
        0: {"Variant SKU": "SRT_COT_111", "Variant Price": "25", "Vendor": "Acme"},
        2: {"Variant SKU": "HAT_GRY_275", "Variant Compare At Price": "22.99"},
    },
    mapping=(
        "mapping: id <- Handle",
        "mapping: title <- Title",
        "mapping: description <- Body (HTML)",
        "mapping: image <- Image Src",
    ),
)
SHOPIFY_PARISPOUSSE = Feed(
    "shopify_parispousse_products_export.csv",
    ",",
    shopify,
    picture_hosts=("https://cdn.shopify.com",),
    html=True,
    words=(
        "Un bout de forêt dans votre salon.",
        "Carré Riviera Taupe",
        "S - Ø 30 cm - hauteur 28 cm",
        "le bac “Riviera” ne craint ni soleil, ni gel",
        "Il n’y a pas d’évaporation",
    ),
    attributes={
        2: {"Option1 Value": "S - Ø 30 cm - hauteur 28 cm", "Variant Price": "39.00"},
        7: {"Vendor": "ParisPousse", "Variant Price": "69.00", "Type": "Pot"},
    },
    mapping=(
        "mapping: id <- Handle",
        "mapping: title <- Title",
        "mapping: description <- Body (HTML)",
        "mapping: image <- Image Src",
    ),
)
WOOCOMMERCE = Feed(
    "woocommerce_sample_products.csv",
    ",",
    one_row_per_item("ID", column("Name"), lambda r: comma_list(r["Images"]), "Description"),
    picture_hosts=("https://woocommercecore.mystagingwebsite.com",),
    words=("V-Neck T-Shirt", "Hoodie - Red, No"),
    attributes={
        2: {
            "SKU": "woo-hoodie-with-logo",
            "Regular price": "45",
            "Categories": "Clothing > Hoodies",
        },
        14: {"Type": "variation", "Parent": "woo-vneck-tee", "SKU": "woo-vneck-tee-red"},
    },
    mapping=(
        "mapping: id <- ID",
        "mapping: title <- Name",
        "mapping: description <- Description",
        "mapping: image <- Images",
    ),
)
PRESTASHOP = Feed(
    "prestashop_products_import.csv",
    ";",
    one_row_per_item(
        "Product ID",
        column("Name *"),
        lambda r: comma_list(r["Image URLs (x,y,z...)"]),
        "Description",
    ),
    picture_hosts=("http://localhost",),
    html=True,
    words=("Belkin Leather Folio for iPod nano - Black / Chocolate",),
    attributes={
        0: {
            "Price tax excluded": "100",
            "Reference #": "RP-demo_1",
            "Categories (x,y,z...)": "iPods",
            "Summary": "<p>New design.</p>",
        },
    },
    mapping=(
        "mapping: id <- Product ID",
        "mapping: title <- Name *",
        "mapping: description <- Description",
        "mapping: image <- Image URLs (x,y,z...)",
    ),
)
VEHICLE_ADS = Feed(
    "google_vehicle_ads_campers4sale.tsv",
    "\t",
    one_row_per_item(
        "id",
        column("title"),
        lambda r: [r["image_link"], *comma_list(r["additional_image_link"])],
        None,
    ),
    picture_hosts=("https://res.cloudinary.com",),
    words=("2025 Ford Transit Custom Limited – 170bhp – 8 speed Auto – SWB Campervan",),
    attributes={
        0: {
            "price": "11995 GBP",
            "mileage": "93000 miles",
            "make": "Volkswagen",
            "model": "Caddy",
            "year": "2014",
        },
        11: {"price": "60995 GBP", "mileage": "70 miles", "color": "Grey Matter"},
    },
    mapping=("mapping: id <- id", "mapping: title <- title", "mapping: image <- image_link"),
)
MERCHANT = Feed(
    "google_merchant_mesbonbons.tsv",
    "\t",
    one_row_per_item("id", column("title"), lambda r: [r["image_link"]], "description"),
    picture_hosts=("https://fladis.azureedge.net",),
    words=(
        "Dulceplus Mini Câble Fraise-Crème - 1 kg",
        "Anneau Fraise, Cœur Pêche, Gomme Parisienne",
        "Frisia Tétine Bleue Citrique - 1,25 kg",
        "Frisia Hot Lips lèvres - 1,5 kg",
    ),
    attributes={
        0: {"price": "6.99 EUR", "gtin": "8436574492361", "brand": "Dulceplus"},
        19: {"price": "9.99 EUR", "availability": "in_stock", "brand": "Frisia"},
    },
    mapping=(
        "mapping: id <- id",
        "mapping: title <- title",
        "mapping: description <- description",
        "mapping: image <- image_link",
    ),
)
BRAIN = Feed(
    "brain_ua_products_export.csv",
    ",",
    one_row_per_item(None, column("full_name"), lambda r: json.loads(r["photos"]), None),
    picture_hosts=("https://brain.com.ua",),
    words=("Мобільний телефон Apple iPhone 15 128GB Black (MTP03)", "чорний"),
    attributes={0: {"product_code": "U0854689", "price": "33999", "color": "чорний"}},
    mapping=("mapping: title <- full_name", "mapping: image <- photos"),
)
DIVAN = Feed(
    "divan_ru_products.csv",
    ";",
    one_row_per_item(None, column("name"), no_pictures, None),
    words=("Торшер Ральф Beige", "Подвесной светильник Ферум Orange"),
    attributes={
        0: {
            "price": "13990",
            "link": "https://www.divan.ru/product/torsher-ralf-beige",
            "category": "svet",
        }
    },
    mapping=("mapping: title <- name",),
)
AUTO_RU = Feed(
    "auto_ru_cars.csv",
    ",",
    one_row_per_item(
        None,
        lambda r: " ".join(f"{r['Марка']} {r['Модель']} {r['Год выпуска']}".split()),
        no_pictures,
        None,
    ),
    columns={"title": "{Марка} {Модель} {Год выпуска}"},
    words=("BMW 3 серии 320d xDrive VII (G2x) 2020", "Санкт-Петербург"),
    attributes={
        0: {
            "Название": "BMW 3 серии 320d xDrive VII (G2x)",
            "Цена, руб": "3460000",
            "Пробег, км": "40000",
            "Город продажи": "Санкт-Петербург",
        }
    },
    mapping=("mapping: title <- {Марка} {Модель} {Год выпуска}",),
)
DROM = Feed(
    "drom_ru_cars.csv",
    ",",
    one_row_per_item(None, column("Name"), no_pictures, "Description"),
    words=("Продажа BMW X7, 2022 год в Москве", "Москва и МО", "17 490 000 ₽"),
    attributes={
        0: {
            "Price": "17 490 000 ₽",
            "City": "Москва и МО",
            "Link": "https://moscow.drom.ru/bmw/x7/50498091.html",
        }
    },
    mapping=("mapping: title <- Name", "mapping: description <- Description"),
)

WITH_PICTURES = [
    SHOPIFY_TEMPLATE,
    SHOPIFY_PARISPOUSSE,
    WOOCOMMERCE,
    PRESTASHOP,
    VEHICLE_ADS,
    MERCHANT,
    BRAIN,
]
WITHOUT_PICTURES = [DIVAN, AUTO_RU, DROM]
ALL = WITH_PICTURES + WITHOUT_PICTURES
each_feed = pytest.mark.parametrize("feed", ALL, ids=str)


def test_the_corpus_says_what_it_holds():
    """The oracle itself: the numbers tests/feeds/README.md states."""
    counts = {feed.file: len(feed.expect().items) for feed in ALL}
    assert counts == {
        "shopify_product_template.csv": 3,
        "shopify_parispousse_products_export.csv": 10,
        "woocommerce_sample_products.csv": 25,
        "prestashop_products_import.csv": 7,
        "google_vehicle_ads_campers4sale.tsv": 40,
        "google_merchant_mesbonbons.tsv": 20,
        "brain_ua_products_export.csv": 3,
        "divan_ru_products.csv": 40,
        "auto_ru_cars.csv": 39,
        "drom_ru_cars.csv": 6,
    }
    assert BRAIN.expect().rejected == [(2, "missing_title")]
    assert AUTO_RU.expect().rejected == [(13, "duplicate_key")]


# --------------------------------------------------------------------------- reading


def read(data: bytes, **options) -> tuple[CsvReader, list[CsvRow], list[RejectedRow]]:
    reader = CsvReader(io.BytesIO(data), **options)
    items = list(reader)
    rows = [item for item in items if isinstance(item, CsvRow)]
    rejected = [item for item in items if isinstance(item, RejectedRow)]
    return reader, rows, rejected


def read_feed(feed: Feed, data: bytes | None = None):
    data = feed.path.read_bytes() if data is None else data
    return read(data, columns=feed.columns or None)


@each_feed
def test_every_item_is_one_car_with_its_title_and_key(feed):
    """Counts are exact: one car per item (Shopify's continuation rows merged into their
    product), the feed's id as the key, the titles as written, the rejects named."""
    expected = feed.expect()
    _, rows, rejected = read_feed(feed)

    assert [(r.line, str(r.reason)) for r in rejected] == expected.rejected
    assert [(r.line, r.title) for r in rows] == [(i.line, i.title) for i in expected.items]
    for row, item in zip(rows, expected.items, strict=True):
        if item.key is not None:
            assert row.key == item.key


@pytest.mark.parametrize("feed", WITH_PICTURES, ids=str)
def test_every_picture_of_an_item_comes_in_feed_order(feed):
    expected = feed.expect()
    _, rows, _ = read_feed(feed)

    assert len(rows) == len(expected.items)
    for row, item in zip(rows, expected.items, strict=True):
        assert row.images == item.pictures, f"{feed.file} line {item.line} ({item.title}): pictures"


_TAG = re.compile(r"<\s*/?\s*[A-Za-z!][^>]*>")
_ENTITY = re.compile(r"&(#\d+|#x[0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
_HANDLER = re.compile(r"\son[a-z]+\s*=", re.IGNORECASE)


def assert_plain_text(text: str, where: str) -> None:
    assert not _TAG.search(text), f"{where}: a tag in the plain description: {text[:200]!r}"
    assert not _ENTITY.search(text), f"{where}: an entity in the plain description"
    assert "\xa0" not in text, f"{where}: a no-break space in the plain description"


def assert_sanitised(html: str, where: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered, where
    assert "javascript:" not in lowered, where
    assert not _HANDLER.search(html), f"{where}: an event handler survived"


def visible_text(html: str) -> list[str]:
    """The words of an HTML cell (tags dropped), to compare with the plain text."""
    from html import unescape

    return " ".join(unescape(_TAG.sub(" ", html)).split()).split()


@each_feed
def test_descriptions_are_plain_text_and_html_is_kept_sanitised(feed):
    expected = feed.expect()
    _, rows, _ = read_feed(feed)

    for row, item in zip(rows, expected.items, strict=True):
        where = f"{feed.file} line {item.line}"
        assert_plain_text(row.description, where)
        raw = item.description.strip()
        if feed.html and raw:
            assert row.description_html, f"{where}: the HTML description is not kept"
            assert_sanitised(row.description_html, where)
            assert row.description.split() == visible_text(raw), (
                f"{where}: the plain text is not the HTML's text"
            )
        else:
            assert row.description == raw, f"{where}: a plain description is changed"
            assert row.description_html is None


def test_word_html_becomes_lines_of_text():
    """ParisPousse's Shopify editor HTML: `<div style>` blocks become lines, the `<p>`
    of `&nbsp;` after them disappears, `<img>` and `<meta>` leave no text."""
    _, rows, _ = read_feed(SHOPIFY_PARISPOUSSE)
    by_title = {row.title: row for row in rows}

    sapin = by_title["Sapin - Nordmann"]
    assert [line for line in sapin.description.splitlines() if line] == [
        "Un bout de forêt dans votre salon.",
        "Cet objet incontournable apportera une atmosphère magique à votre intérieur !",
        "Nos sapins Nordmann de 1er choix sont réputés pour leurs belles proportions et leur "
        "capacité à garder longuement leurs épines.",
        "Ils sont fournis avec une véritable buche en guise de support.",
    ]
    lotus = by_title["Lotus Fiberstone Noir"]
    assert lotus.description.startswith("Comment choisir la bonne taille de pot ?\n")
    assert "Choisir_la_bonne_taille" not in lotus.description  # the <img src> is no text
    assert "<meta" not in (lotus.description_html or "").lower()
    template = {row.title: row for row in read_feed(SHOPIFY_TEMPLATE)[1]}
    assert template["Example Beanie"].description == (
        "Our beanie is a must-have accessory from our heritage brand and dead stock yarn. "
        "Made with recycled materials, it not only adds style but also promotes "
        "sustainability. Expertly crafted using 100% cotton yarns, making it both unique "
        "and super soft."
    )
    assert template["Example Beanie"].description_html.startswith("<p>Our beanie")


_MOJIBAKE = re.compile("[ÃÂÐÑ]|â€|\ufffd")


def all_text(row: CsvRow) -> str:
    return "\n".join([row.title, row.description, *row.attributes.keys(), *row.attributes.values()])


def assert_decoded_right(feed: Feed, rows: list[CsvRow]) -> None:
    text = "\n".join(all_text(row) for row in rows)
    for word in feed.words:
        assert word in text, f"{feed.file}: {word!r} does not come out as written"
    found = _MOJIBAKE.search(text)
    assert not found, (
        f"{feed.file}: mojibake {text[max(0, found.start() - 30) : found.end() + 30]!r}"
    )


@each_feed
def test_accented_and_cyrillic_text_is_decoded_right(feed):
    reader, rows, _ = read_feed(feed)

    assert reader.encoding in ("utf-8", "utf-8-sig")
    assert_decoded_right(feed, rows)


@each_feed
def test_the_other_columns_are_attributes(feed):
    expected = feed.expect()
    reader, rows, _ = read_feed(feed)

    used = set(reader.mapping.described.values())
    for row in rows:
        assert not used & set(row.attributes), "a mapped column is repeated as an attribute"
    for index, values in feed.attributes.items():
        row, item = rows[index], expected.items[index]
        for name, value in values.items():
            assert item.record[name] == value, "the test's own spot check is wrong"
            assert row.attributes.get(name) == value, (
                f"{feed.file} line {item.line}: attribute {name!r}"
            )


# --------------------------------------------------------------------------- Excel's forms


def excel_csv(feed: Feed) -> bytes:
    """What Excel on a Western-European Windows writes for "CSV": the records with minimal
    quoting and CRLF record ends (line breaks inside a cell stay LF), in Windows-1252."""
    text = feed.path.read_bytes().decode("utf-8-sig")
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=feed.delimiter, lineterminator="\r\n").writerows(
        csv.reader(io.StringIO(text, newline=""), delimiter=feed.delimiter)
    )
    return out.getvalue().encode("cp1252")


def excel_unicode_text(feed: Feed) -> bytes:
    """Excel's "Unicode Text": UTF-16LE behind a BOM, tab-separated, CRLF (the Google
    feeds are already tab-separated with CRLF and hold no quote, tab or line break in a
    cell, so Excel writes exactly their text)."""
    text = feed.path.read_bytes().decode("utf-8")
    assert "\r\n" in text and '"' not in text
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def same_reading(a: list[CsvRow], b: list[CsvRow]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        where = f"line {x.line} ({x.title})"
        assert y.title == x.title, where
        assert y.description == x.description, where
        assert y.description_html == x.description_html, where
        assert y.images == x.images, where
        assert y.attributes == x.attributes, where
        assert y.key == x.key, where


@pytest.mark.parametrize("feed", [SHOPIFY_PARISPOUSSE, SHOPIFY_TEMPLATE], ids=str)
def test_excel_csv_in_windows_1252_reads_like_the_utf8_original(feed):
    data = excel_csv(feed)
    assert b"\r\n" in data
    _, original, _ = read_feed(feed)

    reader, rows, rejected = read_feed(feed, data)

    assert not rejected
    same_reading(original, rows)
    assert_decoded_right(feed, rows)
    if any(ord(c) > 127 for row in original for c in all_text(row)):
        assert reader.encoding == "cp1252"


@pytest.mark.parametrize("feed", [MERCHANT, VEHICLE_ADS], ids=str)
def test_excel_unicode_text_reads_like_the_utf8_original(feed):
    data = excel_unicode_text(feed)
    _, original, _ = read_feed(feed)

    reader, rows, rejected = read_feed(feed, data)

    assert (reader.encoding, reader.delimiter) == ("utf-16", "\t")
    assert not rejected
    same_reading(original, rows)
    assert_decoded_right(feed, rows)


# --------------------------------------------------------------------------- importing


def import_csv(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_csv", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


_SUMMARY = re.compile(
    r"created (\d+), updated (\d+), unchanged (\d+), deleted (\d+), rejected (\d+) rows; "
    r"images: (\d+) ok, (\d+) failed"
)


def summary(out: str) -> dict[str, int]:
    last = out.strip().splitlines()[-1]
    match = _SUMMARY.fullmatch(last)
    assert match, f"not the summary line: {last!r}"
    names = ("created", "updated", "unchanged", "deleted", "rejected", "images_ok", "images_failed")
    return dict(zip(names, map(int, match.groups()), strict=True))


@dataclass
class Served:
    """A feed copied with its pictures pointed at the local server."""

    source: Path
    base: str
    bodies: dict[str, bytes]  # path -> the JPEG served there

    def url(self, original: str, hosts: tuple[str, ...]) -> str:
        for host in hosts:
            if original.startswith(host + "/"):
                return self.base + original[len(host) :]
        raise AssertionError(f"{original} is on none of the hosts {hosts}")

    def body(self, url: str) -> bytes:
        path = url[len(self.base) :].split("?", 1)[0].split("#", 1)[0]
        return self.bodies[path]


def serve(feed: Feed, server, folder: Path) -> Served:
    """Copy the feed with each picture host replaced by the server (bytes otherwise
    unchanged) and serve a distinct small JPEG at every path it names there."""
    base = server.url("").rstrip("/")
    data = feed.path.read_bytes()
    for host in feed.picture_hosts:
        data = data.replace(host.encode() + b"/", base.encode() + b"/")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / feed.file
    source.write_bytes(data)
    paths = re.findall(re.escape(base).encode() + rb"(/[^\s,;\"'\[\]|<>?#]*)", data)
    bodies = {}
    for index, path in enumerate(dict.fromkeys(p.decode() for p in paths)):
        bodies[path] = jpeg_bytes(40 + index % 200, 30 + index // 200)
        server.add(path, bodies[path], headers={"Content-Type": "image/jpeg"})
    return Served(source, base, bodies)


def stored_text(cars) -> str:
    return "\n".join(
        f"{c.title}\n{c.description}\n{json.dumps(c.attributes, ensure_ascii=False)}" for c in cars
    )


def car_of(item: Item, served: Served, feed: Feed) -> Car:
    if item.key is not None:
        return Car.objects.get(external_key=item.key)
    return Car.objects.get(source_image_url=served.url(item.pictures[0], feed.picture_hosts))


@pytest.mark.django_db
@pytest.mark.parametrize("feed", WITH_PICTURES, ids=str)
def test_the_feed_imports_with_every_picture_of_every_car(feed, http_server, tmp_path):
    expected = feed.expect()
    served = serve(feed, http_server, tmp_path / "feed")
    report = tmp_path / "report.json"

    out, err = import_csv(str(served.source), *feed.options, f"--report={report}")

    counts = summary(out)
    # Every picture of every car, counted once per car that shows it (SPEC §3, §4).
    per_picture = sum(len(item.pictures) for item in expected.items)
    assert counts.pop("images_ok") == per_picture, (out, err)
    assert counts == {
        "created": len(expected.items),
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "rejected": len(expected.rejected),
        "images_failed": 0,
    }, err
    assert Car.objects.count() == len(expected.items)
    lines = err.splitlines()
    assert re.fullmatch(r"encoding: utf-8(-sig)?", lines[0]), lines[0]
    for line in feed.mapping:
        assert line in lines, f"{line!r} not in stderr:\n{err}"
    assert "no image column" not in err
    written = json.loads(report.read_text())
    assert written["counts"]["created"] == len(expected.items)
    assert [(r["line"], r["reason"]) for r in written["rejected_rows"]] == expected.rejected
    assert written["image_failures"] == []

    for item in expected.items:
        where = f"{feed.file} line {item.line} ({item.title})"
        car = car_of(item, served, feed)
        assert car.title == item.title, where
        first = served.url(item.pictures[0], feed.picture_hosts)
        assert car.source_image_url == first, where
        assert car.image_status == ImageStatus.READY, f"{where}: {car.image_error}"
        assert car.picture.sha256 == hashlib.sha256(served.body(first)).hexdigest(), where
        assert set(car.renditions) == {"default", "web", "mobile"}, where
        further = list(car.more_pictures.order_by("position"))
        assert [p.source_url for p in further] == [
            served.url(ref, feed.picture_hosts) for ref in item.pictures[1:]
        ], where
        for slot in further:
            assert slot.status == ImageStatus.READY, f"{where}: {slot.error}"
            body = served.body(slot.source_url)
            assert slot.picture.sha256 == hashlib.sha256(body).hexdigest(), where
        assert_plain_text(car.description, where)
        if feed.html and item.description.strip():
            assert car.description_html, where
            assert_sanitised(car.description_html, where)
        assert car.attributes, f"{where}: no attributes kept"
    for index, values in feed.attributes.items():
        car = car_of(expected.items[index], served, feed)
        for name, value in values.items():
            assert car.attributes.get(name) == value, f"{feed.file}: attribute {name!r}"
    stored = stored_text(Car.objects.all())
    for word in feed.words:
        assert word in stored, f"{word!r} was not stored as written"

    again, err = import_csv(str(served.source), *feed.options)

    assert summary(again) == {
        "created": 0,
        "updated": 0,
        "unchanged": len(expected.items),
        "deleted": 0,
        "rejected": len(expected.rejected),
        "images_ok": 0,
        "images_failed": 0,
    }, err
    assert Car.objects.count() == len(expected.items)


@pytest.mark.django_db
@pytest.mark.parametrize("feed", WITH_PICTURES, ids=str)
def test_a_picture_that_fails_is_reported_on_the_line_and_key_of_each_item_naming_it(
    feed, http_server, tmp_path
):
    """The last item's last picture (a further one where the feed has them) answers
    404: the report names every place that picture has, each on its item's line (its
    first record's) and key, with the URL and the reason; that place fails and every
    other picture of the feed is stored."""
    expected = feed.expect()
    served = serve(feed, http_server, tmp_path / "feed")

    def path(url: str) -> str:
        return url[len(served.base) :].split("?", 1)[0]

    places = [
        (item, served.url(ref, feed.picture_hosts))
        for item in expected.items
        for ref in item.pictures
    ]
    gone = path(places[-1][1])
    failing = [(item, url) for item, url in places if path(url) == gone]
    http_server.add(gone, b"gone", status=404)
    report = tmp_path / "report.json"

    out, err = import_csv(str(served.source), *feed.options, f"--report={report}")

    counts = summary(out)
    assert (counts["images_ok"], counts["images_failed"]) == (
        len(places) - len(failing),
        len(failing),
    ), (out, err)
    reported = json.loads(report.read_text())["image_failures"]
    assert sorted((f["line"], f["key"], f["url"], f["reason"]) for f in reported) == sorted(
        (item.line, car_of(item, served, feed).external_key, url, "http_error")
        for item, url in failing
    )
    for item, url in failing:
        car = car_of(item, served, feed)
        if item.key is not None:
            assert car.external_key == item.key
        statuses = {car.source_image_url: car.image_status}
        statuses |= {p.source_url: p.status for p in car.more_pictures.all()}
        assert statuses.pop(url) == ImageStatus.FAILED
        assert set(statuses.values()) <= {ImageStatus.READY}, statuses


@pytest.mark.django_db
@pytest.mark.parametrize("feed", WITHOUT_PICTURES, ids=str)
def test_a_feed_without_a_picture_column_says_so_and_imports(feed, tmp_path):
    expected = feed.expect()
    report = tmp_path / "report.json"

    out, err = import_csv(str(feed.path), *feed.options, f"--report={report}")

    assert summary(out) == {
        "created": len(expected.items),
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "rejected": len(expected.rejected),
        "images_ok": 0,
        "images_failed": 0,
    }, err
    said = [line for line in err.splitlines() if "no image column" in line]
    assert len(said) == 1 and "use --map image=COLUMN" in said[0], err
    written = json.loads(report.read_text())
    assert any("no image column" in w and "--map image=COLUMN" in w for w in written["warnings"])
    assert [(r["line"], r["reason"]) for r in written["rejected_rows"]] == expected.rejected
    for line in feed.mapping:
        assert line in err.splitlines(), f"{line!r} not in stderr:\n{err}"
    assert re.fullmatch(r"encoding: utf-8(-sig)?", err.splitlines()[0])
    cars = list(Car.objects.all())
    assert sorted(c.title for c in cars) == sorted(i.title for i in expected.items)
    assert {c.image_status for c in cars} == {ImageStatus.NONE}
    for car in cars:
        assert_plain_text(car.description, f"{feed.file}: {car.title}")
    for index, values in feed.attributes.items():
        item = expected.items[index]
        matching = [
            car
            for car in cars
            if car.title == item.title
            and car.description == item.description.strip()
            and all(car.attributes.get(name) == value for name, value in values.items())
        ]
        assert len(matching) == 1, f"{feed.file} line {item.line}: attributes {values}"
    stored = stored_text(cars)
    for word in feed.words:
        assert word in stored, f"{word!r} was not stored as written"

    again, _ = import_csv(str(feed.path), *feed.options)

    assert summary(again)["created"] == 0
    assert summary(again)["unchanged"] == len(expected.items)
    assert Car.objects.count() == len(expected.items)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("feed", "make", "encoding"),
    [
        (SHOPIFY_PARISPOUSSE, excel_csv, "cp1252"),
        (MERCHANT, excel_unicode_text, "utf-16"),
        (VEHICLE_ADS, excel_unicode_text, "utf-16"),
    ],
    ids=["csv-cp1252-parispousse", "unicode-text-merchant", "unicode-text-vehicle-ads"],
)
def test_an_excel_form_imports_like_the_original_and_names_its_encoding(
    feed, make, encoding, tmp_path
):
    expected = feed.expect()
    source = tmp_path / feed.file
    source.write_bytes(make(feed))

    out, err = import_csv(str(source), "--dry-run", "--no-images", *feed.options)

    assert err.splitlines()[0] == f"encoding: {encoding}"
    counts = summary(out)
    assert (counts["created"], counts["rejected"]) == (len(expected.items), 0), err

"""Which column gives which field (SPEC §3), and the encodings feeds come in. Pure Python."""

import codecs
import io
from pathlib import Path

import pytest

from imports.columns import map_columns, normalise
from imports.csv_reader import CsvReader, CsvRow, CsvSourceError


def rows(data: bytes, **options) -> tuple[CsvReader, list[CsvRow]]:
    reader = CsvReader(io.BytesIO(data), **options)
    return reader, [row for row in reader if isinstance(row, CsvRow)]


@pytest.mark.parametrize(
    ("written", "normalised"),
    [
        ("Name *", "name"),
        ("Image URLs (x,y,z...)", "image urls"),
        ("image_link", "image link"),
        ("  Body (HTML) ", "body"),
        ("\ufeffTitle", "title"),
        ("additional_image_link", "additional image link"),
        ("Variant-Image", "variant image"),
    ],
)
def test_header_names_are_normalised(written, normalised):
    assert normalise(written) == normalised


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        # Shopify
        (
            ["Handle", "Title", "Body (HTML)", "Vendor", "Image Src", "Variant Image"],
            {"id": "Handle", "title": "Title", "description": "Body (HTML)", "image": "Image Src"},
        ),
        # WooCommerce: ID wins over SKU, Description over Short description
        (
            ["ID", "Type", "SKU", "Name", "Short description", "Description", "Images"],
            {"id": "ID", "title": "Name", "description": "Description", "image": "Images"},
        ),
        # PrestaShop
        (
            ["Product ID", "Active (0/1)", "Name *", "Image URLs (x,y,z...)", "Description"],
            {
                "id": "Product ID",
                "title": "Name *",
                "description": "Description",
                "image": "Image URLs (x,y,z...)",
            },
        ),
        # Google Merchant Center / Vehicle Ads
        (
            ["id", "title", "description", "link", "image_link", "additional_image_link"],
            {"id": "id", "title": "title", "description": "description", "image": "image_link"},
        ),
        (["vehicle_id", "make", "model", "title", "image_link"], None),
    ],
)
def test_built_in_aliases_map_each_format(header, expected):
    mapped = map_columns(header, lambda: [])
    described = {
        k: v for k, v in mapped.described.items() if k in ("id", "title", "description", "image")
    }
    if expected is None:
        assert described["id"] == "vehicle_id"
    else:
        assert described == expected


def test_more_picture_columns_follow_the_image_column():
    reader, [row] = rows(
        b"id\ttitle\timage_link\tadditional_image_link\n"
        b"v1\tVan\thttps://e.x/1.jpg\thttps://e.x/2.jpg,https://e.x/3.jpg\n"
    )
    assert row.images == ("https://e.x/1.jpg", "https://e.x/2.jpg", "https://e.x/3.jpg")
    assert reader.mapping.described["more_images"] == "additional_image_link"
    assert reader.delimiter == "\t"


def test_an_unnamed_picture_column_is_recognised_by_its_values():
    data = (
        b"Marke,Modell,Fotos,Link\n"
        b"VW,Golf,https://i.example/a/1.jpg https://i.example/a/2.jpg,https://ads.example/1\n"
        b"BMW,X5,https://i.example/b/1.JPG,https://ads.example/2\n"
        b"Audi,A4,,https://ads.example/3\n"
    )
    reader, got = rows(data, columns={"title": "{Marke} {Modell}"})
    assert reader.mapping.described["image"] == "Fotos" and reader.mapping.guessed_image
    assert [r.images for r in got] == [
        ("https://i.example/a/1.jpg", "https://i.example/a/2.jpg"),
        ("https://i.example/b/1.JPG",),
        (),
    ]
    assert got[0].attributes == {"Link": "https://ads.example/1"}


def test_page_links_are_not_taken_for_pictures():
    data = b"name,url\nGolf,https://shop.example/golf\nPolo,https://shop.example/polo\n"
    reader, _ = rows(data)
    assert "image" not in reader.mapping.fields


def test_a_template_builds_a_field_from_columns_with_spaces_collapsed():
    data = "company,mark,year,city\nVolkswagen , Golf,2019,Москва\nКиа,  ,2020,Казань\n"
    reader, got = rows(data.encode(), columns={"title": "{company} {mark} {year}"})
    assert [r.title for r in got] == ["Volkswagen Golf 2019", "Киа 2020"]
    assert got[0].attributes == {"city": "Москва"}
    assert reader.mapping.described["title"] == "{company} {mark} {year}"


def test_map_names_a_column_outright_and_refuses_unknown_ones():
    _, [row] = rows(b"Modell,Bild\nGolf,g.jpg\n", columns={"title": "Modell", "image": "Bild"})
    assert (row.title, row.images) == ("Golf", ("g.jpg",))
    with pytest.raises(CsvSourceError, match="--map title: no column 'Marke'"):
        CsvReader(io.BytesIO(b"Modell\nGolf\n"), columns={"title": "Marke"})
    with pytest.raises(CsvSourceError, match="--map: unknown field 'price'"):
        CsvReader(io.BytesIO(b"title\nGolf\n"), columns={"price": "title"})


def test_continuation_rows_add_their_pictures_to_the_item_above():
    data = (
        b"Handle,Title,Image Src,Image Position\n"
        b"golf,Golf,https://cdn.example/g1.jpg,1\n"
        b"golf,,https://cdn.example/g2.jpg,2\n"
        b"golf,,https://cdn.example/g1.jpg,3\n"
        b"polo,Polo,https://cdn.example/p1.jpg,1\n"
        b"golf,,https://cdn.example/g3.jpg,4\n"
    )
    reader, got = rows(data)
    assert [(r.key, r.images) for r in got] == [
        ("golf", ("https://cdn.example/g1.jpg", "https://cdn.example/g2.jpg")),
        ("polo", ("https://cdn.example/p1.jpg",)),
    ]
    # A continuation not right below its item cannot join it: rejected, not dropped.
    rejected = [row for row in CsvReader(io.BytesIO(data)) if not isinstance(row, CsvRow)]
    assert [(r.line, r.reason) for r in rejected] == [(6, "missing_title")]
    assert any("continued the item above" in w for w in reader.warnings)


def test_pictures_are_capped_per_car_and_the_rest_is_said():
    urls = ",".join(f"https://e.x/{n}.jpg" for n in range(25))
    reader, [row] = rows(f'title,images\nGolf,"{urls}"\n'.encode(), max_pictures=20)
    assert len(row.images) == 20 and row.images[-1] == "https://e.x/19.jpg"
    assert any("5 pictures over the limit of 20" in w for w in reader.warnings)


def test_attributes_are_bounded_in_number_and_size():
    header = ",".join(["title", *(f"c{n}" for n in range(60))])
    values = ",".join(["Golf", "x" * 2000, *(str(n) for n in range(1, 60))])
    reader, [row] = rows(f"{header}\n{values}\n".encode(), max_attributes=50)
    assert len(row.attributes) == 50 and len(row.attributes["c0"]) == 1024
    assert "c50" not in row.attributes
    assert any("10 columns over the limit of 50" in w for w in reader.warnings)
    assert any("cut to that length" in w for w in reader.warnings)


# --- encodings ---------------------------------------------------------------------------

TEXT = "title;description\nCafé Crème;Ölwechsel für 300 €, très bien\n"


@pytest.mark.parametrize(
    ("encoded", "encoding"),
    [
        (TEXT.encode("utf-8"), "utf-8"),
        (codecs.BOM_UTF8 + TEXT.encode("utf-8"), "utf-8-sig"),
        (TEXT.replace(";", "\t").replace("\n", "\r\n").encode("utf-16"), "utf-16"),  # Excel
        (TEXT.replace("\n", "\r\n").encode("cp1252") * 1, "cp1252"),  # Excel "CSV" on Windows
    ],
)
def test_each_encoding_reads_the_same_text(encoded, encoding):
    reader, [row] = rows(encoded)
    assert reader.encoding == encoding
    assert (row.title, row.description) == ("Café Crème", "Ölwechsel für 300 €, très bien")


def test_cyrillic_in_windows_1251_is_detected():
    text = "Марка,Модель,Описание\n" + "Лада,Веста,Отличное состояние и один владелец\n" * 3
    reader, got = rows(text.encode("cp1251"), columns={"title": "{Марка} {Модель}"})
    assert reader.encoding == "cp1251"
    assert got[0].title == "Лада Веста"


def test_a_declared_encoding_wins_and_an_unknown_one_is_fatal():
    data = "title\nCafé\n".encode("latin-1")
    reader, [row] = rows(data, encoding="latin-1")
    assert (reader.encoding, row.title) == ("iso8859-1", "Café")
    with pytest.raises(CsvSourceError, match="unknown encoding 'nope'"):
        CsvReader(io.BytesIO(data), encoding="nope")


def test_utf16_keeps_line_numbers_and_multi_line_fields():
    text = 'title\tdescription\r\nGolf\t"one\r\ntwo"\r\n\r\nPolo\tx\r\n'
    _, got = rows(text.encode("utf-16"))
    assert [(r.line, r.title, r.description) for r in got] == [
        (2, "Golf", "one\r\ntwo"),
        (5, "Polo", "x"),
    ]


def test_the_pipe_delimiter_is_sniffed():
    reader, [row] = rows(b"id|title|image\n1|Golf|https://e.x/g.jpg\n")
    assert reader.delimiter == "|" and row.images == ("https://e.x/g.jpg",)


def test_values_in_a_column_with_no_name_are_said_not_kept():
    # drom.ru's export (tests/feeds): pandas wrote its index as a column with no name.
    path = Path(__file__).parent / "feeds" / "drom_ru_cars.csv"
    with path.open("rb") as stream:
        reader = CsvReader(stream)
        got = [row for row in reader if isinstance(row, CsvRow)]
    assert got and all("" not in row.attributes for row in got)
    assert f"{len(got)} values in columns with no name in the header were not kept" in (
        reader.warnings
    )
    # A trailing delimiter's empty column says nothing.
    quiet, _ = rows(b"title,\nGolf,\n")
    assert not any("no name" in w for w in quiet.warnings)

"""What one cell holds (SPEC §3): picture lists, and descriptions written in HTML."""

import pytest

from imports.cells import html_to_text, looks_like_html, picture_refs, sanitised_html

A, B, C = "https://cdn.example/a.jpg", "https://cdn.example/b.png?v=2", "http://x.example/c.webp"


@pytest.mark.parametrize(
    "cell",
    [
        f"{A},{B},{C}",  # WooCommerce, PrestaShop
        f"{A}, {B}, {C}",
        f"{A}|{B}|{C}",
        f"{A} | {B} | {C}",
        f"{A} {B}\n{C}",  # whitespace, a line break inside a quoted cell
        f"{A};{B};{C}",
        f'["{A}", "{B}", "{C}"]',  # a JSON array (a Ukrainian shop's export)
        f' [ "{A}","{B}" ,"{C}" ] ',
    ],
)
def test_every_list_form_gives_the_pictures_in_order(cell):
    assert picture_refs(cell) == [A, B, C]


def test_a_url_with_commas_in_its_path_is_one_picture():
    url = "https://res.example/image/upload/w_400,h_300,c_fill/car.jpg"
    assert picture_refs(url) == [url]
    assert picture_refs(f"{url}, {A}") == [url, A]


def test_local_paths_are_split_only_when_each_is_a_file_name():
    assert picture_refs("img/a.jpg|img/b.png") == ["img/a.jpg", "img/b.png"]
    assert picture_refs("img/a.jpg, img/b.png") == ["img/a.jpg", "img/b.png"]
    assert picture_refs("my car, front.jpg") == ["my car, front.jpg"]
    assert picture_refs("img/my car.jpg") == ["img/my car.jpg"]


def test_empty_cells_and_odd_json_give_what_they_hold():
    assert picture_refs("") == [] and picture_refs("   ") == []
    assert picture_refs("[]") == []
    assert picture_refs('["", " ", 3, "' + A + '"]') == [A]
    assert picture_refs("[not json") == ["[not json"]


SHOPIFY_BODY = (
    '<p data-end="73" data-start="0"><span style="font-family: Calibri;" class="MsoNormal">'
    "Low&nbsp;mileage,&nbsp;one owner.</span></p>\n<ul><li>Leather seats</li>"
    "<li>Caf&eacute; racer &amp; sunroof</li></ul><p>Price:\xa0 12&#8239;000&nbsp;&euro;<br>"
    "Call us</p><script>alert(1)</script><style>p{color:red}</style>"
)


def test_html_becomes_plain_text_with_block_ends_as_line_breaks():
    assert looks_like_html(SHOPIFY_BODY)
    assert html_to_text(SHOPIFY_BODY) == (
        "Low mileage, one owner.\n\nLeather seats\nCafé racer & sunroof\n\nPrice: 12 000 €\nCall us"
    )


def test_text_without_tags_or_entities_is_not_html():
    assert not looks_like_html("A 3 < 5 litre engine, 2 doors & a boot")
    assert looks_like_html("Fish &amp; chips")
    assert looks_like_html("one<br>two")


def test_sanitised_html_keeps_structure_and_drops_anything_active():
    hostile = (
        '<p onclick="steal()">Fine <b>car</b></p><script>alert(1)</script>'
        '<a href="javascript:alert(1)">x</a><a href="https://dealer.example/">dealer</a>'
        '<img src=x onerror="alert(1)"><iframe src="https://evil.example"></iframe>'
        '<span style="color:red" class="MsoNormal">styled</span>'
    )
    clean = sanitised_html(hostile)
    for bad in (
        "script",
        "onclick",
        "onerror",
        "javascript:",
        "<img",
        "iframe",
        "style=",
        "class=",
    ):
        assert bad not in clean, bad
    assert "<p>Fine <b>car</b></p>" in clean
    assert (
        'href="https://dealer.example/"' in clean and 'rel="noopener noreferrer nofollow"' in clean
    )
    assert "<span>styled</span>" in clean

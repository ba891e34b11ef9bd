"""The gallery page at `/` and a car's page at `/cars/<id>/` (SPEC §7), server-rendered,
through Django's test client.

The catalogue is the bundled sample imported by the real importer: twenty cars with real
renditions on disk, four whose image failed for four different reasons, one without an
image. A car's page is tested on a feed with several pictures per car, fetched from a
local HTTP server (tests.support.catalog.pictures_catalog). What a real browser makes of
the pages is in test_browser.py.
"""

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.core.files.storage import default_storage

from cars.catalog import bump_catalog_version
from cars.models import Car, ImageStatus
from cars.pictures.reasons import IMAGE_REASON_TEXT, ImageReason
from gallery import views
from gallery.cards import car_page_from_detail, card_from_row, missing_text
from imports.services import run_import
from tests.support.catalog import ROADSTER_DESCRIPTION, pictures_catalog

SAMPLE_CARS = 25
FAILED_IMAGES = {
    "Text Pretending": ImageReason.INVALID_IMAGE,
    "Missing File": ImageReason.UNREACHABLE,
    "Escaping Path": ImageReason.BLOCKED_PATH,
    "FTP Image": ImageReason.UNSUPPORTED_SCHEME,
}


class _Page(HTMLParser):
    """The parts of the gallery HTML the tests look at: cards, their images, links."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[dict] = []
        self.links: dict[str, str] = {}  # rel or label -> href
        self.current_page: str | None = None
        self._text_into: str | None = None
        self._in_current = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if tag == "li" and "card" in classes:
            self.cards.append({"id": attrs["id"], "title": "", "img": None, "source": None})
        elif tag == "img" and self.cards:
            self.cards[-1]["img"] = attrs
        elif tag == "source" and self.cards:
            self.cards[-1]["source"] = attrs
        elif tag == "h2" and self.cards:
            self._text_into = "title"
        elif tag == "a" and "card__link" in classes:
            self.cards[-1]["href"] = attrs["href"]
        elif tag == "p" and "placeholder" in classes:
            self._text_into = "placeholder"
        elif tag == "a" and attrs.get("href") and ("pager__page" in classes or attrs.get("rel")):
            self.links[attrs.get("rel") or attrs.get("aria-label", "")] = attrs["href"]
        elif tag == "span" and attrs.get("aria-current") == "page":
            self._in_current = True

    def handle_endtag(self, tag):
        if tag in ("h2", "p"):
            self._text_into = None
        if tag == "span":
            self._in_current = False

    def handle_data(self, data):
        if self._text_into and self.cards:
            card = self.cards[-1]
            card[self._text_into] = card.get(self._text_into, "") + data
        if self._in_current:
            self.current_page = data.strip()

    @property
    def titles(self) -> list[str]:
        return [card["title"] for card in self.cards]


def get_page(client, query: str = "") -> tuple[_Page, str]:
    response = client.get("/" + query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    page = _Page()
    page.feed(html)
    return page, html


@pytest.fixture
def sample(db) -> dict[str, Car]:
    """The bundled sample, imported the way `make run` imports it."""
    report = run_import(workers=4)
    assert (report.counts.created, report.counts.images_failed) == (SAMPLE_CARS, 4)
    return {car.title: car for car in Car.objects.all()}


def rendition_url(car: Car, platform: str) -> str:
    return default_storage.url(car.renditions[platform]["name"])


# --------------------------------------------------------------------------- the cards


def test_the_first_page_lists_the_first_cars_in_catalogue_order(client, sample):
    page, _ = get_page(client)

    in_order = list(Car.objects.order_by("id").values_list("title", flat=True))
    assert page.titles == in_order[: views.PAGE_SIZE]
    assert page.current_page == "1"


def test_each_picture_offers_the_mobile_and_web_renditions_with_their_sizes(client, sample):
    page, _ = get_page(client)

    car = sample["Aurora GT"]
    card = next(c for c in page.cards if c["title"] == "Aurora GT")
    img, mobile, web = card["img"], car.renditions["mobile"], car.renditions["web"]
    assert img["src"] == rendition_url(car, "mobile")
    assert img["srcset"] == (
        f"{rendition_url(car, 'mobile')} {mobile['width']}w, "
        f"{rendition_url(car, 'web')} {web['width']}w"
    )
    assert img["sizes"]
    # The space is reserved before a byte arrives: no layout shift.
    assert (img["width"], img["height"]) == (str(mobile["width"]), str(mobile["height"]))
    assert img["loading"] == "lazy"
    assert img["alt"] == "Aurora GT"
    # Windows of desktop size are the web platform.
    source = card["source"]
    assert source["srcset"] == rendition_url(car, "web")
    assert (source["width"], source["height"]) == (str(web["width"]), str(web["height"]))
    assert source["media"] == "(min-width: 64rem)"


def test_every_car_with_a_picture_has_an_image_and_every_other_a_placeholder(client, sample):
    cards = get_page(client)[0].cards + get_page(client, "?page=2")[0].cards

    assert len(cards) == SAMPLE_CARS
    for card in cards:
        car = sample[card["title"]]
        if car.image_status == ImageStatus.READY:
            assert card["img"] is not None and "placeholder" not in card, card
        else:
            assert card["img"] is None and card["placeholder"], card


def test_a_placeholder_says_in_words_why_there_is_no_picture(client, sample):
    cards = {
        c["title"]: c for c in get_page(client)[0].cards + get_page(client, "?page=2")[0].cards
    }

    for title, reason in FAILED_IMAGES.items():
        assert cards[title]["placeholder"] == f"No picture: {IMAGE_REASON_TEXT[reason]}.", title
    assert cards["No Image Yet"]["placeholder"] == "No picture was given for this car."


def test_a_picture_still_being_made_says_so():
    row = {
        "id": 1,
        "title": "T",
        "description": "",
        "renditions": {},
        "image_status": ImageStatus.PENDING,
        "image_error": None,
    }
    assert card_from_row(row).missing == "The picture is still being prepared."
    assert missing_text(ImageStatus.FAILED, "a_code_from_the_future") == (
        "No picture: the image could not be fetched."
    )


def test_a_picture_smaller_than_the_mobile_box_is_offered_once():
    # Never upscaled: a 300x200 original makes two 300x200 renditions, one picture.
    same = {"name": "CACHE/images/x/small.jpg", "width": 300, "height": 200}
    row = {
        "id": 1,
        "title": "Small",
        "description": "",
        "renditions": {"mobile": same, "web": {**same, "name": "CACHE/images/x/web.jpg"}},
        "image_status": ImageStatus.READY,
        "image_error": None,
    }
    card = card_from_row(row)
    assert card.large is None
    assert card.srcset == f"{default_storage.url(same['name'])} 300w"


def test_text_from_the_csv_is_escaped(client, db):
    Car.objects.create(
        external_key="x", title="<script>alert(1)</script>", description='"><img src=x>'
    )
    bump_catalog_version()

    _, html = get_page(client)

    assert "<script>alert(1)" not in html and "<img src=x>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_an_empty_catalogue_says_so(client, db):
    page, html = get_page(client)

    assert page.cards == []
    assert "no car has been imported yet" in html


# --------------------------------------------------------------------------- search


@pytest.mark.parametrize("words", ["yellow", "coupe", "blue estate", "electric saloon", "sed"])
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_narrows_the_grid_to_what_the_api_finds_in_the_same_order(client, sample, words):
    page, html = get_page(client, f"?search={words}")

    api = client.get("/api/cars/", {"search": words}).json()
    assert api, words
    assert page.titles == [car["title"] for car in api]
    assert len(page.titles) < SAMPLE_CARS
    assert f'value="{words}"' in html  # the box keeps what was typed


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_a_search_that_finds_nothing_says_so_and_offers_every_car(client, sample):
    for words in ("zeppelin", "!!!"):
        page, html = get_page(client, f"?search={words}")
        assert page.cards == []
        assert "Nothing matches" in html and 'href="/"' in html


# --------------------------------------------------------------------------- paging


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_pages_follow_each_other_and_keep_the_search(client, sample, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    # Several pages of matches, ranked by relevance (on SQLite and on PostgreSQL alike).
    expected = [car["title"] for car in client.get("/api/cars/?search=car&limit=100").json()]
    assert len(expected) > 4

    seen, query = [], "?search=car"
    while True:
        page, _ = get_page(client, query)
        seen += page.titles
        if "next" not in page.links:
            break
        query = page.links["next"].removeprefix("/")
        assert "search=car" in query

    assert seen == expected
    back, _ = get_page(client, page.links["prev"].removeprefix("/"))
    assert back.titles == expected[-len(page.titles) - 2 : -len(page.titles)]


def test_the_second_page_holds_the_rest(client, sample):
    page, _ = get_page(client, "?page=2")

    assert len(page.cards) == SAMPLE_CARS - views.PAGE_SIZE
    assert page.current_page == "2"
    assert page.links["prev"] == "/"
    assert "next" not in page.links


@pytest.mark.parametrize(
    ("query", "shown"), [("?page=x", "1"), ("?page=0", "2"), ("?page=99", "2")]
)
def test_a_page_number_out_of_range_shows_the_nearest_page(client, sample, query, shown):
    assert get_page(client, query)[0].current_page == shown


# --------------------------------------------------------------------------- cost


def test_a_page_touches_neither_the_storage_nor_the_database_more_than_twice(
    client, sample, monkeypatch, django_assert_max_num_queries
):
    get_page(client)  # the count is cached per catalogue version from here on
    storage_class = default_storage.__class__
    for name in ("exists", "open", "size", "listdir", "save", "delete"):

        def forbidden(*args, _name=name, **kwargs):
            raise AssertionError(f"storage.{_name} called while serving the gallery")

        monkeypatch.setattr(storage_class, name, forbidden)

    with django_assert_max_num_queries(2):  # the catalogue version, the page's rows
        page, _ = get_page(client)
    assert len(page.cards) == views.PAGE_SIZE


def test_the_stylesheet_is_served(client, db):
    _, html = get_page(client)
    href = re.search(r'<link rel="stylesheet" href="([^"]+)"', html).group(1)

    response = client.get(href)

    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b".grid" in body


# --------------------------------------------------------------------------- a car's page


class _CarPage(HTMLParser):
    """The parts of a car's page the tests look at: pictures, placeholders, details."""

    def __init__(self) -> None:
        super().__init__()
        self.photos: list[dict] = []  # {"id", "img": attrs or None, "placeholder": text}
        self.attributes: list[list[str]] = []  # [name, value] per row of the details
        self.back: str | None = None
        self.title = ""
        self._text_into: list | dict | None = None
        self._key = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        if "photo" in classes:
            self.photos.append({"id": attrs.get("id"), "img": None, "placeholder": None})
        elif tag == "img" and self.photos:
            self.photos[-1]["img"] = attrs
        elif "placeholder" in classes and self.photos:
            self._text_into, self._key = self.photos[-1], "placeholder"
        elif tag == "a" and "crumbs__back" in classes:
            self.back = attrs["href"]
        elif tag == "h1":
            self._text_into, self._key = self.__dict__, "title"
        elif tag == "tr":
            self.attributes.append([])
        elif tag in ("th", "td") and self.attributes:
            self.attributes[-1].append("")
            self._text_into = self.attributes[-1]

    def handle_endtag(self, tag):
        if tag in ("p", "h1", "th", "td"):
            self._text_into = None

    def handle_data(self, data):
        if isinstance(self._text_into, list):
            self._text_into[-1] += data
        elif isinstance(self._text_into, dict):
            self._text_into[self._key] = (self._text_into[self._key] or "") + data


def get_car_page(client, car: Car, query: str = "") -> tuple[_CarPage, str]:
    response = client.get(f"/cars/{car.pk}/{query}")
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    page = _CarPage()
    page.feed(html)
    return page, html


def media_path(url: str) -> str:
    """The path of an API rendition URL (absolute) as the gallery writes it (relative)."""
    return urlsplit(url).path


@pytest.fixture
def imported(db, http_server, tmp_path) -> dict[str, Car]:
    """tests.support.catalog.pictures_catalog, imported by the real importer: pictures
    fetched from the local HTTP server, stored and rendered."""
    report = run_import(source=str(pictures_catalog(tmp_path, http_server)), workers=2)
    assert report.summary().endswith("images: 4 ok, 1 failed"), report.summary()
    return {car.title: car for car in Car.objects.all()}


def test_a_card_opens_its_car_page_keeping_the_search_and_the_page(client, sample):
    first = get_page(client)[0].cards[0]
    car = sample[first["title"]]
    assert first["href"] == f"/cars/{car.pk}/"
    assert get_car_page(client, car)[0].back == "/"

    on_page_two = get_page(client, "?page=2")[0].cards[0]
    car = sample[on_page_two["title"]]
    assert on_page_two["href"] == f"/cars/{car.pk}/?page=2"
    assert get_car_page(client, car, "?page=2")[0].back == "/?page=2"

    found = get_page(client, "?search=yellow")[0].cards[0]
    car = sample[found["title"]]
    assert found["href"] == f"/cars/{car.pk}/?search=yellow"
    page, html = get_car_page(client, car, "?search=yellow")
    assert page.back == "/?search=yellow"
    assert 'value="yellow"' in html  # the search box keeps it too


def test_the_car_page_shows_every_picture_in_feed_order_with_both_renditions(client, imported):
    car = imported["Aurora Roadster"]
    api = client.get(f"/api/cars/{car.pk}/").json()
    assert len(api["pictures"]) == 3

    page, _ = get_car_page(client, car)

    assert page.title == "Aurora Roadster"
    assert [photo["id"] for photo in page.photos] == ["picture-1", "picture-2", "picture-3"]
    for number, (photo, picture) in enumerate(zip(page.photos, api["pictures"], strict=True), 1):
        img, mobile, web = photo["img"], picture["images"]["mobile"], picture["images"]["web"]
        small, large = media_path(mobile["url"]), media_path(web["url"])
        assert img["src"] == small
        assert img["srcset"] == f"{small} {mobile['width']}w, {large} {web['width']}w"
        assert img["sizes"]
        assert (img["width"], img["height"]) == (str(mobile["width"]), str(mobile["height"]))
        assert img["alt"] == f"Aurora Roadster, picture {number} of 3"
    # The first is wanted at once; the others load as they come into view.
    assert [photo["img"]["loading"] for photo in page.photos] == ["eager", "lazy", "lazy"]


def test_a_picture_that_failed_says_why_in_its_place(client, imported):
    page, _ = get_car_page(client, imported["Harbour Van"])

    shown, failed = page.photos
    assert shown["img"] is not None and shown["placeholder"] is None
    assert failed["img"] is None
    assert failed["placeholder"] == f"No picture: {IMAGE_REASON_TEXT[ImageReason.HTTP_ERROR]}."


def test_a_picture_still_being_made_or_a_car_without_any_says_so():
    pending = {"source_url": "https://example.com/1.jpg", "error": None, "renditions": None}
    row = {
        "id": 1,
        "title": "T",
        "description": "",
        "description_html": "",
        "attributes": {},
        "pictures": [pending],
    }
    assert car_page_from_detail(row).photos[0].missing == "The picture is still being prepared."
    bare = car_page_from_detail({**row, "pictures": []})
    assert (bare.photos, bare.missing) == ([], "No picture was given for this car.")


def test_the_description_keeps_the_html_the_import_allowed(client, db):
    allowed = (
        '<p>A <b>red</b> <em>coupe</em>.</p><ul><li>Sunroof</li></ul><p><a href="https://'
        'example.com/" rel="noopener noreferrer nofollow">More</a></p>'
    )
    car = Car.objects.create(
        external_key="c", title="Coupe", description="A red coupe.", description_html=allowed
    )

    _, html = get_car_page(client, car)

    assert allowed in html


def test_an_imported_description_shows_no_script_handler_or_javascript_link(client, imported):
    assert "<script>" in ROADSTER_DESCRIPTION and "onclick=" in ROADSTER_DESCRIPTION
    assert "javascript:" in ROADSTER_DESCRIPTION

    _, html = get_car_page(client, imported["Aurora Roadster"])

    lowered = html.lower()
    assert "<script" not in lowered and "stolen" not in lowered
    assert "onclick" not in lowered and "javascript:" not in lowered
    # What the allow-list keeps is still there, as HTML.
    assert "<p>A <b>green</b> roadster.</p><ul><li>Soft top</li>" in html
    assert (
        '<a href="https://example.com/aurora" rel="noopener noreferrer nofollow">online</a>' in html
    )


def test_a_plain_description_keeps_its_line_breaks_and_is_escaped(client, imported, db):
    _, html = get_car_page(client, imported["Harbour Van"])
    assert "<p>Room for a boat.<br>And the trailer.</p>" in html

    car = Car.objects.create(external_key="p", title="Plain", description="<i>not html</i>")
    _, html = get_car_page(client, car)
    assert "&lt;i&gt;not html&lt;/i&gt;" in html and "<i>not html" not in html


def test_the_attributes_table_shows_each_column_escaped(client, imported):
    page, html = get_car_page(client, imported["Aurora Roadster"])

    assert page.attributes == [
        ["Colour", "Racing green"],
        ["Mileage", "12 000 km"],
        ["Note", "<b>x</b>"],  # as text: the parser decoded &lt;b&gt;
    ]
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


def test_an_attribute_named_items_is_a_row_like_any_other(client, db):
    car = Car.objects.create(
        external_key="i", title="Lot", attributes={"items": "3", "<Name>": "'quoted' & more"}
    )

    page, html = get_car_page(client, car)

    assert page.attributes == [["<Name>", "'quoted' & more"], ["items", "3"]]  # by name
    assert "&lt;Name&gt;" in html


def test_a_missing_car_is_a_404_page_that_leads_back(client, db):
    response = client.get("/cars/999999/?search=van")

    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "No such car" in html and 'href="/?search=van"' in html
    assert client.get("/cars/abc/").status_code == 404


def test_the_car_page_counts_against_the_gallery_rate(client, imported, settings):
    settings.CARS_ANON_RATE = "2/min"
    car = imported["Aurora Roadster"]

    answers = [client.get("/"), client.get(f"/cars/{car.pk}/"), client.get(f"/cars/{car.pk}/")]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1]["Retry-After"]) > 0


def test_a_car_page_costs_the_detail_selector_two_queries_and_no_storage_call(
    client, imported, monkeypatch, django_assert_max_num_queries
):
    storage_class = default_storage.__class__
    for name in ("exists", "open", "size", "listdir", "save", "delete"):

        def forbidden(*args, _name=name, **kwargs):
            raise AssertionError(f"storage.{_name} called while serving a car's page")

        monkeypatch.setattr(storage_class, name, forbidden)

    with django_assert_max_num_queries(2):  # the car, its further pictures
        page, _ = get_car_page(client, imported["Aurora Roadster"])
    assert len(page.photos) == 3

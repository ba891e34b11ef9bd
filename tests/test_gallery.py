"""The gallery page at `/` (SPEC §7), server-rendered, through Django's test client.

The catalogue is the bundled sample imported by the real importer: twenty cars with real
renditions on disk, four whose image failed for four different reasons, one without an
image. What a real browser makes of the page is in test_browser.py.
"""

import re
from html.parser import HTMLParser

import pytest
from django.core.files.storage import default_storage

from cars.catalog import bump_catalog_version
from cars.models import Car, ImageStatus
from gallery import views
from gallery.cards import card_from_row, missing_text
from imports.pictures.reasons import IMAGE_REASON_TEXT, ImageReason
from imports.services import run_import

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

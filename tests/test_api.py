"""The cars REST API (SPEC §5-§6), end to end on real data.

The catalogue is built the way production builds it: a real CSV naming real image files
(next to it, by relative path) imported through `imports.services.run_import`, so every
rendition is a real JPEG on disk with its size stored on the car. Bulk pagination tests
use `Car.objects.bulk_create` (no images) followed by `bump_catalog_version()`.

Every test runs on SQLite (FTS5) and on PostgreSQL (`DATABASE_URL=postgres://...`).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import PIL.Image
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils.dateparse import parse_datetime

from cars.catalog import bump_catalog_version
from cars.models import Car
from imports.services import run_import
from tests.support.images import jpeg_bytes, photo_like, png_bytes
from tests.support.search import index_existing_cars

ON_SQLITE = django_settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")

LIST_KEYS = {"id", "title", "description", "image"}
DETAIL_KEYS = LIST_KEYS | {
    "images",
    "source_image_url",
    "image_error",
    "created_at",
    "updated_at",
    "pictures",
    "attributes",
    "description_html",
}
# The platform boxes of SPEC §5 (the built-in CARS_PLATFORMS).
BOXES = {"default": (1920, 1920), "web": (1280, 960), "mobile": (640, 480)}
PLATFORM_LISTS = {
    "default": "/api/cars/",
    "web": "/api/cars/web/",
    "mobile": "/api/cars/mobile/",
}

# --------------------------------------------------------------------------- helpers

_LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')


def links(response) -> dict[str, str]:
    """The Link header as {rel: absolute URL}."""
    header = response.get("Link", "")
    found = {rel: url for url, rel in _LINK.findall(header)}
    # Nothing in the header that the pattern did not understand.
    assert len(found) == header.count("rel="), header
    return found


def local(url: str) -> str:
    """An absolute URL from the API as a path + query the test client can GET."""
    parts = urlsplit(url)
    assert parts.scheme == "http" and parts.netloc == "testserver", url
    return parts.path + (f"?{parts.query}" if parts.query else "")


def query_of(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).query)


def assert_json_error(response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("detail"), str) and body["detail"]
    return body


def b64(text: str) -> str:
    """A syntactically valid cursor token wrapping arbitrary text."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def fetch_image(client, url: str) -> PIL.Image.Image:
    response = client.get(local(url))
    assert response.status_code == 200, (url, response.status_code)
    data = b"".join(response.streaming_content) if response.streaming else response.content
    image = PIL.Image.open(io.BytesIO(data))
    image.load()
    return image


def fitted(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """What "fit into box, never upscale" makes of `size`."""
    w, h = size
    scale = min(1.0, box[0] / w, box[1] / h)
    return round(w * scale), round(h * scale)


def close_size(got: tuple[int, int], want: tuple[int, int]) -> bool:
    return all(abs(a - b) <= 1 for a, b in zip(got, want, strict=True))


def walk(client, url: str, rel: str = "next", limit_pages: int = 200) -> list:
    """GET `url`, then follow `rel` links to the end; the responses in visiting order."""
    responses = []
    response = client.get(url)
    while True:
        assert response.status_code == 200, (url, response.status_code, response.content)
        responses.append(response)
        following = links(response).get(rel)
        if following is None:
            return responses
        assert len(responses) < limit_pages, "the links never end"
        response = client.get(local(following))


def ids(response) -> list[int]:
    return [car["id"] for car in response.json()]


# --------------------------------------------------------------------------- fixtures


@functools.cache
def _image_files() -> dict[str, bytes]:
    return {
        "big.jpg": photo_like(2400, 1600),  # landscape, larger than every box
        "tall.jpg": jpeg_bytes(900, 2000),  # portrait, taller than every box
        "small.png": png_bytes(300, 200),  # smaller than every box: never upscaled
        "medium.jpg": photo_like(1000, 700, seed=3),  # fits default and web, not mobile
        "broken.jpg": b"this is not an image at all\n" * 20,
    }


ORIGINAL_SIZES = {
    "big.jpg": (2400, 1600),
    "tall.jpg": (900, 2000),
    "small.png": (300, 200),
    "medium.jpg": (1000, 700),
}

CATALOG_CSV = """id,title,description,image
r1,Family Wagon,"Spacious estate car, painted yellow, with roof rails",tall.jpg
r2,Yellow Roadster,"A fast convertible with leather seats, alloy wheels",big.jpg
r3,City Hatchback,Small and frugal runabout,small.png
r4,Electric Sedan,Silent and quick commuter,medium.jpg
r5,Broken Picture,The file is not an image,broken.jpg
r6,Missing Picture,The file does not exist,missing.jpg
r7,Bare Coupe,No picture at all,
"""


@dataclass
class Catalog:
    folder: Path
    ids: dict[str, int]  # title -> id
    report: object

    def car(self, title: str) -> Car:
        return Car.objects.get(pk=self.ids[title])

    def reimport(self, extra_rows: str = "") -> object:
        csv_path = self.folder / "cars.csv"
        csv_path.write_text(CATALOG_CSV + extra_rows, encoding="utf-8")
        return run_import(source=str(csv_path), workers=4)


@pytest.fixture
def catalog(db, tmp_path) -> Catalog:
    """Seven cars imported from a real CSV with real images through the real importer."""
    folder = tmp_path / "source"
    folder.mkdir()
    for name, data in _image_files().items():
        (folder / name).write_bytes(data)
    csv_path = folder / "cars.csv"
    csv_path.write_text(CATALOG_CSV, encoding="utf-8")
    report = run_import(source=str(csv_path), workers=4)
    counts = report.counts
    assert (counts.created, counts.rejected, counts.images_ok, counts.images_failed) == (
        7,
        0,
        4,
        2,
    ), report.summary()
    return Catalog(folder, dict(Car.objects.values_list("title", "pk")), report)


@pytest.fixture
def text_catalog(db, tmp_path) -> dict[str, int]:
    """The same seven cars imported from a real CSV, without images (fast: for search)."""
    folder = tmp_path / "text-source"
    folder.mkdir()
    lines = CATALOG_CSV.splitlines()
    rows = [lines[0]] + [line.rsplit(",", 1)[0] + "," for line in lines[1:]]
    csv_path = folder / "cars.csv"
    csv_path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = run_import(source=str(csv_path), workers=1)
    assert (report.counts.created, report.counts.rejected) == (7, 0), report.summary()
    return dict(Car.objects.values_list("title", "pk"))


N_BULK = 23
TITLES = ("alfa", "bravo", "charlie")  # plain lowercase ASCII: same order in every collation
_T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
STAMPS = (
    _T0,  # microsecond 0: isoformat() drops the fraction
    _T0 + timedelta(microseconds=250_000),
    _T0 + timedelta(seconds=1),
    _T0 + timedelta(seconds=1, microseconds=1),
)


@pytest.fixture
def many_cars(db) -> list[Car]:
    """23 cars, titles and updated_at with many duplicates that straddle page borders."""
    cars = Car.objects.bulk_create(
        Car(
            external_key=f"bulk-{i}",
            title=TITLES[(i * 2) % 3],
            description=f"shared words for car number {i}",
            created_at=_T0,
            updated_at=STAMPS[(i * 3) % 4],
        )
        for i in range(N_BULK)
    )
    bump_catalog_version()
    index_existing_cars()  # written around cars.services: indexed as a rebuild would
    return cars


def expected_order(ordering: str) -> list[int]:
    """The order SPEC'd for `ordering`: that field, then id, in the same direction."""
    descending = ordering.startswith("-")
    field = ordering.lstrip("-")
    rows = list(Car.objects.values_list(field, "pk"))
    return [pk for _, pk in sorted(rows, reverse=descending)]


# --------------------------------------------------------------------------- lists


@pytest.mark.parametrize("platform", ["default", "web", "mobile"])
def test_list_is_an_array_of_exactly_four_fields_ordered_by_id(client, catalog, platform):
    response = client.get(PLATFORM_LISTS[platform])

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert isinstance(body, list)
    assert [set(car) for car in body] == [LIST_KEYS] * 7
    assert [car["id"] for car in body] == sorted(catalog.ids.values())
    by_id = {car["id"]: car for car in body}
    for title, pk in catalog.ids.items():
        car = catalog.car(title)
        assert (by_id[pk]["title"], by_id[pk]["description"]) == (car.title, car.description)
    assert response["X-Total-Count"] == "7"


def test_default_platform_path_serves_the_same_list_as_the_plain_list(client, catalog):
    plain = client.get("/api/cars/")
    default = client.get("/api/cars/default/")

    assert default.status_code == 200
    assert default.json() == plain.json()
    assert default["X-Total-Count"] == plain["X-Total-Count"]


@pytest.mark.parametrize("platform", ["default", "web", "mobile"])
def test_list_images_are_absolute_urls_of_jpegs_fitting_the_platform_box_never_upscaled(
    client, catalog, platform
):
    body = client.get(PLATFORM_LISTS[platform]).json()
    by_title = {car["title"]: car for car in body}
    originals = {
        "Yellow Roadster": "big.jpg",
        "Family Wagon": "tall.jpg",
        "City Hatchback": "small.png",
        "Electric Sedan": "medium.jpg",
    }
    box = BOXES[platform]
    urls = set()
    for title, original in originals.items():
        url = by_title[title]["image"]
        assert url.startswith("http://testserver/media/"), url
        urls.add(url)
        image = fetch_image(client, url)
        assert image.format == "JPEG"
        assert image.width <= box[0] and image.height <= box[1], (title, image.size)
        source = ORIGINAL_SIZES[original]
        assert image.width <= source[0] and image.height <= source[1], "upscaled"
        assert close_size(image.size, fitted(source, box)), (title, image.size)
    assert len(urls) == 4, "every car has its own rendition"
    # The small picture fits every box as it is: same size everywhere.
    assert fetch_image(client, by_title["City Hatchback"]["image"]).size == (300, 200)


def test_each_platform_gets_its_own_rendition_url(client, catalog):
    lists = {name: client.get(url).json() for name, url in PLATFORM_LISTS.items()}
    pk = catalog.ids["Yellow Roadster"]
    images = {name: next(c["image"] for c in body if c["id"] == pk) for name, body in lists.items()}
    assert len(set(images.values())) == 3, images


def test_cars_whose_image_failed_or_is_absent_have_a_null_image(client, catalog):
    for url in PLATFORM_LISTS.values():
        by_title = {car["title"]: car for car in client.get(url).json()}
        assert by_title["Broken Picture"]["image"] is None
        assert by_title["Missing Picture"]["image"] is None
        assert by_title["Bare Coupe"]["image"] is None


def test_unknown_platform_is_a_json_404(client, text_catalog):
    body = assert_json_error(client.get("/api/cars/tablet/"), 404)
    assert "tablet" in body["detail"]
    assert_json_error(client.get(f"/api/cars/tablet/{text_catalog['Bare Coupe']}/"), 404)


def test_empty_catalogue_lists_nothing(client, db):
    response = client.get("/api/cars/")
    assert response.status_code == 200
    assert response.json() == []
    assert response["X-Total-Count"] == "0"
    assert "Link" not in response


# --------------------------------------------------------------------------- detail


@pytest.mark.parametrize("platform", [None, "default", "web", "mobile"])
def test_detail_has_every_rendition_matching_the_real_files(client, catalog, platform):
    pk = catalog.ids["Yellow Roadster"]
    url = f"/api/cars/{pk}/" if platform is None else f"/api/cars/{platform}/{pk}/"
    response = client.get(url)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == DETAIL_KEYS
    car = catalog.car("Yellow Roadster")
    assert (body["id"], body["title"], body["description"]) == (pk, car.title, car.description)
    assert body["source_image_url"] == "big.jpg"
    assert body["image_error"] is None
    assert parse_datetime(body["created_at"]) == car.created_at
    assert parse_datetime(body["updated_at"]) == car.updated_at

    assert set(body["images"]) == set(django_settings.CARS_PLATFORMS) == set(BOXES)
    for name, entry in body["images"].items():
        assert set(entry) == {"url", "width", "height"}
        assert entry["url"].startswith("http://testserver/media/")
        image = fetch_image(client, entry["url"])
        assert image.format == "JPEG"
        assert image.size == (entry["width"], entry["height"]), name
        assert close_size(image.size, fitted((2400, 1600), BOXES[name])), (name, image.size)
    assert body["image"] == body["images"][platform or "default"]["url"]
    # Its only picture is its image, in the same shape.
    assert body["pictures"] == [{"source_url": "big.jpg", "error": None, "images": body["images"]}]
    assert (body["attributes"], body["description_html"]) == ({}, None)

    listed = client.get(PLATFORM_LISTS[platform or "default"]).json()
    assert next(c for c in listed if c["id"] == pk)["image"] == body["image"]


@pytest.mark.parametrize(
    ("title", "source", "error"),
    [
        ("Broken Picture", "broken.jpg", "invalid_image"),
        ("Missing Picture", "missing.jpg", "unreachable"),
        ("Bare Coupe", "", None),
    ],
)
def test_detail_of_a_car_without_a_usable_image(client, catalog, title, source, error):
    body = client.get(f"/api/cars/web/{catalog.ids[title]}/").json()

    assert set(body) == DETAIL_KEYS
    assert body["image"] is None
    assert body["images"] == {"default": None, "web": None, "mobile": None}
    assert body["source_image_url"] == source
    assert body["image_error"] == error
    no_images = {"default": None, "web": None, "mobile": None}
    expected = [{"source_url": source, "error": error, "images": no_images}] if source else []
    assert body["pictures"] == expected


def test_unknown_car_is_a_json_404(client, text_catalog):
    missing = max(text_catalog.values()) + 1000
    assert_json_error(client.get(f"/api/cars/{missing}/"), 404)
    assert_json_error(client.get(f"/api/cars/web/{missing}/"), 404)


# --------------------------------------------------------------------------- pagination


def test_default_page_size_is_cars_page_size_with_a_next_link(client, many_cars, settings):
    settings.CARS_PAGE_SIZE = 5
    response = client.get("/api/cars/")

    assert ids(response) == [car.pk for car in many_cars[:5]]
    assert response["X-Total-Count"] == str(N_BULK)
    assert set(links(response)) == {"next"}, "the first page has no prev link"


def test_limit_up_to_the_maximum_is_honoured(client, many_cars, settings):
    settings.CARS_PAGE_SIZE = 5
    settings.CARS_MAX_PAGE_SIZE = 10

    assert len(client.get("/api/cars/?limit=1").json()) == 1
    assert len(client.get("/api/cars/?limit=10").json()) == 10
    assert_json_error(client.get("/api/cars/?limit=11"), 400)


def test_a_page_holding_everything_has_no_links(client, many_cars):
    response = client.get(f"/api/cars/?limit={N_BULK}")
    assert len(response.json()) == N_BULK
    assert "Link" not in response


@pytest.mark.parametrize(
    "ordering",
    [
        "id",
        "-id",
        "title",
        "-title",
        "updated_at",
        "-updated_at",
    ],
)
def test_next_links_visit_every_car_once_in_order_and_prev_links_walk_back(
    client, many_cars, ordering
):
    expected = expected_order(ordering)
    assert len(expected) == N_BULK

    forward = walk(client, f"/api/cars/?ordering={ordering}&limit=4")

    pages = [ids(r) for r in forward]
    assert [pk for page in pages for pk in page] == expected
    assert [len(p) for p in pages] == [4, 4, 4, 4, 4, 3]
    assert all(r["X-Total-Count"] == str(N_BULK) for r in forward)
    assert "prev" not in links(forward[0])
    for response in forward[1:]:
        following = links(response)
        assert query_of(following["prev"])["ordering"] == [ordering]
        assert query_of(following["prev"])["limit"] == ["4"]

    backward = walk(client, local(forward[-1].wsgi_request.build_absolute_uri()), rel="prev")

    assert [ids(r) for r in backward] == pages[::-1]
    assert "next" in links(backward[-1]) and "prev" not in links(backward[-1])


@pytest.mark.parametrize("ordering", ["updated_at", "-updated_at"])
def test_updated_at_ordering_with_offset_links_visits_every_car_in_order(
    client, many_cars, ordering
):
    pages = walk(client, f"/api/cars/?ordering={ordering}&offset=0&limit=4")
    assert [pk for r in pages for pk in ids(r)] == expected_order(ordering)
    one_page = client.get(f"/api/cars/?ordering={ordering}&limit={N_BULK}")
    assert ids(one_page) == expected_order(ordering)


def test_title_order_breaks_ties_by_id(client, many_cars):
    body = walk(client, "/api/cars/?ordering=title&limit=5")
    rows = [(car["title"], car["id"]) for response in body for car in response.json()]
    assert rows == sorted(rows)
    assert [title for title, _ in rows] == sorted(car.title for car in many_cars)


def test_offset_pages_and_their_links(client, many_cars):
    all_ids = [car.pk for car in many_cars]

    first = client.get("/api/cars/?offset=0&limit=5")
    assert ids(first) == all_ids[:5]
    assert set(links(first)) == {"next"}
    # Every parameter spelled out, defaults too: one spelling per page (one cache entry).
    assert query_of(links(first)["next"]) == {"offset": ["5"], "limit": ["5"], "ordering": ["id"]}

    middle = client.get("/api/cars/?offset=10&limit=5")
    assert ids(middle) == all_ids[10:15]
    assert query_of(links(middle)["next"])["offset"] == ["15"]
    assert query_of(links(middle)["prev"])["offset"] == ["5"]

    near_start = client.get("/api/cars/?offset=2&limit=5")
    assert ids(near_start) == all_ids[2:7]
    assert query_of(links(near_start)["prev"])["offset"] == ["0"]

    last = client.get("/api/cars/?offset=20&limit=5")
    assert ids(last) == all_ids[20:]
    assert set(links(last)) == {"prev"}
    assert last["X-Total-Count"] == str(N_BULK)

    beyond = client.get("/api/cars/?offset=500&limit=5")
    assert beyond.status_code == 200 and beyond.json() == []
    assert "next" not in links(beyond)


def test_offset_links_keep_the_ordering_and_cover_every_car(client, many_cars):
    pages = walk(client, "/api/cars/?ordering=-title&offset=0&limit=6")
    assert [pk for r in pages for pk in ids(r)] == expected_order("-title")
    for response in pages[1:]:
        assert query_of(response.wsgi_request.get_full_path())["ordering"] == ["-title"]
        assert "cursor" not in query_of(response.wsgi_request.get_full_path())


def test_total_count_follows_the_catalogue_version(client, many_cars):
    assert client.get("/api/cars/?limit=1")["X-Total-Count"] == str(N_BULK)
    Car.objects.bulk_create(
        [Car(external_key="late-1", title="late"), Car(external_key="late-2", title="late")]
    )
    bump_catalog_version()
    assert client.get("/api/cars/?limit=1")["X-Total-Count"] == str(N_BULK + 2)


def test_total_count_is_computed_once_per_catalogue_version(client, many_cars):
    def count_queries(url):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(url).status_code == 200
        return [q["sql"] for q in captured.captured_queries if "COUNT(" in q["sql"].upper()]

    assert len(count_queries("/api/cars/?search=shared&limit=2")) == 1
    assert count_queries("/api/cars/?search=shared&limit=3&offset=3") == []
    assert count_queries("/api/cars/web/?limit=5") != []  # another search: another count
    bump_catalog_version()
    assert len(count_queries("/api/cars/?search=shared&limit=2")) == 1


def test_list_query_count_does_not_grow_with_the_page(
    client, many_cars, django_assert_max_num_queries
):
    client.get("/api/cars/?limit=1")  # count cached
    with django_assert_max_num_queries(2):  # the catalogue version, then the rows
        assert len(client.get(f"/api/cars/?limit={N_BULK}").json()) == N_BULK


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "abc"},
        {"limit": "-1"},
        {"limit": "0"},
        {"limit": "1.5"},
        {"limit": "11"},  # CARS_MAX_PAGE_SIZE is 10 here
        {"limit": ""},
        {"offset": "-5"},
        {"offset": "x"},
        {"offset": ""},
        {"cursor": "garbage"},
        {"cursor": "!!!"},
        {"cursor": "é"},
        {"cursor": b64('{"junk": true}')},
        {"cursor": b64("[1, 2]")},
        {"cursor": b64("[1, 2, 0, 4]")},
        {"cursor": b64('"abc"')},
        {"cursor": b64("[null, 1, 0]")},
        {"cursor": b64('[1, "one", 0]')},
        {"cursor": b64("[1, 2, 0]"), "ordering": "title"},  # title value must be a string
        {"cursor": b64('["not a date", 2, 0]'), "ordering": "updated_at"},
        {"cursor": b64("[1, 2, 0]"), "offset": "0"},  # offset and cursor together
        {"cursor": b64("[1, 2, 0]"), "search": "shared"},  # cursor vs relevance order
        {"ordering": "bogus"},
        {"ordering": "description"},
        {"ordering": "-"},
        {"ordering": "--id"},
    ],
)
def test_invalid_paging_parameters_are_a_json_400(client, many_cars, settings, params):
    settings.CARS_MAX_PAGE_SIZE = 10
    assert_json_error(client.get("/api/cars/", params), 400)
    assert_json_error(client.get("/api/cars/web/", params), 400)


def test_valid_cursor_tokens_built_by_hand_are_accepted(client, many_cars):
    """The token is an opaque keyset position; what the links carry round-trips."""
    second = many_cars[1].pk
    response = client.get("/api/cars/", {"cursor": b64(f"[{second}, {second}, 0]"), "limit": 3})
    assert ids(response) == [car.pk for car in many_cars[2:5]]


@pytest.mark.parametrize("offset", [str(2**63), "1" + "0" * 25])
def test_an_offset_too_large_for_the_database_is_a_400_not_a_500(client, many_cars, offset):
    assert_json_error(client.get("/api/cars/", {"offset": offset}), 400)


@pytest.mark.parametrize("token", ["[1, 1e999, 0]", "[1e999, 1, 0]"])
def test_a_cursor_with_an_infinite_number_is_a_400_not_a_500(client, many_cars, token):
    assert_json_error(client.get("/api/cars/", {"cursor": b64(token)}), 400)


NESTED = "[" * 50_000 + "]" * 50_000  # past the JSON parser's recursion limit


@pytest.mark.parametrize(
    ("ordering", "token"),
    [
        ("id", NESTED),
        ("title", NESTED),
        ("updated_at", NESTED),
        ("id", f"[1, 1, {NESTED}]"),
        ("title", '["a\\u0000b", 1, 0]'),  # PostgreSQL text holds no NUL
        ("title", '["\\ud800", 1, 0]'),  # a lone surrogate: no driver encodes it
        ("updated_at", '["2024-05-01T12:00:00\\u0000", 1, 0]'),
        ("updated_at", '["2024-05-01T12:00:00", 1, 0]'),  # no offset: which instant?
        ("updated_at", '["0001-01-01T00:00:00+01:00", 1, 0]'),  # before year 1 in UTC
        ("-updated_at", '["9999-12-31T23:59:59-01:00", 1, 0]'),  # after 9999 in UTC
        ("id", "[1, 1, 2]"),  # the direction is 0 or 1
        ("id", "[1, true, 0]"),  # an id is a number
    ],
)
def test_a_cursor_the_database_would_refuse_is_a_400_not_a_500(client, many_cars, ordering, token):
    """Issue #22: each was a 500 on PostgreSQL (NUL, offsets), or on both (nesting)."""
    query = {"cursor": b64(token), "ordering": ordering}
    assert_json_error(client.get("/api/cars/", query), 400)
    assert_json_error(client.get("/api/cars/web/", query), 400)


@pytest.mark.parametrize("offset", ["-23:59", "+23:59", "+15:59", "-00:30"])
def test_a_cursor_time_in_another_offset_is_a_400(client, many_cars, offset):
    """PostgreSQL refuses offsets beyond ±15:59 (a 500 before issue #22). Every cursor
    this API writes is in UTC: one in another offset is not ours, and is a 400."""
    pk, stamp = many_cars[5].pk, STAMPS[(5 * 3) % 4]
    sign, hours, minutes = offset[0], int(offset[1:3]), int(offset[4:])
    shift = timedelta(hours=hours, minutes=minutes) * (1 if sign == "+" else -1)
    local = stamp.astimezone(timezone(shift)).isoformat()
    assert local.endswith(offset)
    spelled = client.get(
        "/api/cars/", {"ordering": "updated_at", "cursor": b64(f'["{local}", {pk}, 0]')}
    )
    utc = client.get(
        "/api/cars/", {"ordering": "updated_at", "cursor": b64(f'["{stamp.isoformat()}", {pk}, 0]')}
    )
    assert spelled.status_code == 400 and spelled.json() == {"detail": "cursor is not valid"}
    assert utc.status_code == 200 and ids(utc)


# --------------------------------------------------------------------------- search


def titles(response) -> list[str]:
    assert response.status_code == 200, response.content[:300]
    return [car["title"] for car in response.json()]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("roadster", {"Yellow Roadster"}),  # a title word
        ("leather", {"Yellow Roadster"}),  # a description word
        ("ROADSTER", {"Yellow Roadster"}),  # case-insensitive
        ("yell", {"Yellow Roadster", "Family Wagon"}),  # the last word is a prefix
        ("yellow", {"Yellow Roadster", "Family Wagon"}),
        ("yellow leather", {"Yellow Roadster"}),  # every word must match
        ("yellow roof", {"Family Wagon"}),
        ("yellow quick", set()),
        ("frugal runabout", {"City Hatchback"}),
        ("silent comm", {"Electric Sedan"}),
    ],
)
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_finds_words_in_title_and_description(client, text_catalog, query, expected):
    response = client.get("/api/cars/", {"search": query})
    assert set(titles(response)) == expected
    assert response["X-Total-Count"] == str(len(expected))
    assert all(set(car) == LIST_KEYS for car in response.json())


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_works_on_platform_lists_with_platform_images(client, catalog):
    body = client.get("/api/cars/mobile/", {"search": "roadster"}).json()
    detail = client.get(f"/api/cars/{catalog.ids['Yellow Roadster']}/").json()
    assert [car["image"] for car in body] == [detail["images"]["mobile"]["url"]]


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_ranks_a_title_hit_above_a_description_only_hit(client, text_catalog):
    # The description-only hit (Family Wagon) has the lower id: only ranking puts the
    # title hit first.
    assert text_catalog["Family Wagon"] < text_catalog["Yellow Roadster"]
    assert titles(client.get("/api/cars/", {"search": "yellow"})) == [
        "Yellow Roadster",
        "Family Wagon",
    ]


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_without_match_is_an_empty_array_with_zero_total(client, text_catalog):
    response = client.get("/api/cars/", {"search": "zeppelin"})
    assert response.status_code == 200
    assert response.json() == []
    assert response["X-Total-Count"] == "0"
    assert "Link" not in response


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_blank_search_lists_everything(client, text_catalog):
    response = client.get("/api/cars/", {"search": "   "})
    assert ids(response) == sorted(text_catalog.values())


@pytest.mark.parametrize(
    "query",
    [
        'yellow"',
        '"yellow',
        '"yellow" "roadster"',
        "yellow*",
        "yell*",
        "yellow OR roadster",
        "yellow AND roadster",
        "NOT yellow",
        "NEAR(yellow roadster)",
        "NEAR(",
        "-yellow",
        "yellow -roadster",
        "title:yellow",
        "title : yellow",
        "^yellow",
        "yellow + roadster",
        "(yellow",
        "yellow)",
        "{title description}: yellow",
        "yellow & roadster | wagon",
        "yellow:*",
        "!yellow",
        "yellow <-> roadster",
        "' OR 1=1 --",
        "yellow'; DROP TABLE cars_car; --",
        "%yellow%",
        "yel_low",
        "yellow\\",
        "yellow\x00",
        "Straße Ärger ÖL façade",
        "日本語 の 車",
        "🚗 yellow 🚗",
        "ｙｅｌｌｏｗ",
        "the",
        "a an the of",
        "yellow " * 1500,  # ~10 KB
        "y" * 10_240,  # one 10 KB word
        " ".join(f"w{i}" for i in range(2000)),  # many words
    ],
)
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_hostile_search_input_never_breaks_the_api(client, text_catalog, query):
    response = client.get("/api/cars/", {"search": query})

    assert response.status_code == 200, response.content[:300]
    body = response.json()
    assert isinstance(body, list)
    assert all(set(car) == LIST_KEYS for car in body)
    assert response["X-Total-Count"] == str(len(body))
    assert set(titles(response)) <= set(text_catalog)


@pytest.mark.parametrize("query", ['yellow"', '"yellow', "yellow*", "-yellow", "(yellow"])
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_syntax_characters_are_just_ignored(client, text_catalog, query):
    assert set(titles(client.get("/api/cars/", {"search": query}))) == {
        "Yellow Roadster",
        "Family Wagon",
    }


@pytest.mark.parametrize("query", ['"', "*", "-", ":", "()", "***", "--"])
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_without_any_word_is_an_empty_result_not_a_500(client, text_catalog, query):
    response = client.get("/api/cars/", {"search": query})
    assert response.status_code == 200, response.content[:200]
    assert response.json() == []
    assert response["X-Total-Count"] == "0"


@pytest.mark.parametrize("ordering", ["title", "-title"])
@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_combined_with_ordering(client, text_catalog, ordering):
    got = titles(client.get("/api/cars/", {"search": "yell", "ordering": ordering}))
    expected = ["Family Wagon", "Yellow Roadster"]
    assert got == (expected if ordering == "title" else expected[::-1])


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_results_paginate_with_offset_links(client, many_cars):
    matching = {car.pk for car in many_cars}
    Car.objects.create(external_key="other", title="unrelated", description="nothing here")
    bump_catalog_version()

    pages = walk(client, "/api/cars/?search=shared+words&limit=5")

    seen = [pk for response in pages for pk in ids(response)]
    assert sorted(seen) == sorted(matching), "every match exactly once"
    assert [len(ids(r)) for r in pages] == [5, 5, 5, 5, 3]
    assert all(r["X-Total-Count"] == str(N_BULK) for r in pages)
    for response in pages[:-1]:
        following = query_of(links(response)["next"])
        assert following["search"] == ["shared words"]
        assert "offset" in following and "cursor" not in following
    assert query_of(links(pages[-1])["prev"])["offset"] == ["15"]


@pytest.mark.usefixtures("search_engine")  # the database, then OpenSearch
def test_search_with_ordering_paginates_in_that_order(client, many_cars):
    Car.objects.create(external_key="other", title="aaa unrelated", description="nothing")
    bump_catalog_version()

    pages = walk(client, "/api/cars/?search=shared&ordering=-title&limit=4")

    seen = [pk for response in pages for pk in ids(response)]
    expected = [pk for pk in expected_order("-title") if pk in {c.pk for c in many_cars}]
    assert seen == expected
    assert all(r["X-Total-Count"] == str(N_BULK) for r in pages)


# --------------------------------------------------------------------------- conditional GET


def _cars_urls(catalog: Catalog) -> list[str]:
    pk = catalog.ids["Yellow Roadster"]
    return [
        "/api/cars/",
        "/api/cars/?limit=2",
        "/api/cars/?search=yellow",
        "/api/cars/web/",
        "/api/cars/mobile/?ordering=-title",
        f"/api/cars/{pk}/",
        f"/api/cars/mobile/{pk}/",
    ]


def test_every_cars_response_has_etag_and_cache_control(client, catalog):
    for url in _cars_urls(catalog):
        response = client.get(url)
        assert response.status_code == 200, url
        assert re.fullmatch(r'(W/)?"[^"]+"', response["ETag"]), (url, response["ETag"])
        assert response["Cache-Control"], url
        assert "max-age" in response["Cache-Control"], url


def test_matching_if_none_match_is_a_304_without_the_list_query(
    client, catalog, django_assert_max_num_queries
):
    for url in _cars_urls(catalog):
        etag = client.get(url)["ETag"]
        with django_assert_max_num_queries(1) as captured:
            response = client.get(url, HTTP_IF_NONE_MATCH=etag)
        assert response.status_code == 304, url
        assert response.content == b""
        assert response["ETag"] == etag
        assert response["Cache-Control"] == client.get(url)["Cache-Control"], url
        assert not any("cars_car" in q["sql"] for q in captured.captured_queries), url


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts statements with sqlite3's trace")
def test_a_304_and_a_cached_page_each_run_one_statement_the_version(client, catalog):
    """README: a hit or a 304 costs one primary-key query. It runs on the driver's
    connection, past Django's query log, so it is counted at the driver."""
    url = "/api/cars/web/?limit=2"
    etag = client.get(url)["ETag"]
    statements: list[str] = []
    connection.ensure_connection()
    connection.connection.set_trace_callback(statements.append)
    try:
        assert client.get(url).status_code == 200
        assert client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    finally:
        connection.connection.set_trace_callback(None)
    assert statements == ["SELECT version FROM cars_catalogstate WHERE id = 1"] * 2


@pytest.mark.parametrize("max_age", [0, 300])
def test_a_304_carries_the_same_cache_control_as_the_full_response(
    client, catalog, settings, max_age
):
    settings.CARS_API_MAX_AGE = max_age
    full = client.get("/api/cars/?limit=3")
    not_modified = client.get("/api/cars/?limit=3", HTTP_IF_NONE_MATCH=full["ETag"])
    assert not_modified.status_code == 304
    assert not_modified["Cache-Control"] == full["Cache-Control"]
    assert f"max-age={max_age}" in full["Cache-Control"]
    assert ("must-revalidate" in full["Cache-Control"]) == (max_age == 0)


def test_a_non_matching_if_none_match_gets_the_full_response(client, catalog):
    response = client.get("/api/cars/", HTTP_IF_NONE_MATCH='"something-else"')
    assert response.status_code == 200
    assert len(response.json()) == 7


def test_etag_changes_when_the_catalogue_version_is_bumped(client, catalog):
    for url in _cars_urls(catalog):
        before = client.get(url)["ETag"]
        bump_catalog_version()
        response = client.get(url, HTTP_IF_NONE_MATCH=before)
        assert response.status_code == 200, url
        assert response["ETag"] != before


def test_etag_changes_after_a_new_import(client, catalog):
    before = client.get("/api/cars/")
    detail = f"/api/cars/{catalog.ids['Bare Coupe']}/"
    detail_before = client.get(detail)

    report = catalog.reimport("r8,Late Arrival,Imported in the second run,\n")
    assert report.counts.created == 1

    after = client.get("/api/cars/", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]
    assert "Late Arrival" in titles(after)
    assert after["X-Total-Count"] == "8"
    assert client.get(detail, HTTP_IF_NONE_MATCH=detail_before["ETag"]).status_code == 200


def test_an_import_that_changes_nothing_keeps_the_etag(client, db, tmp_path):
    folder = tmp_path / "good"
    folder.mkdir()
    (folder / "small.png").write_bytes(_image_files()["small.png"])
    csv_path = folder / "cars.csv"
    csv_path.write_text("id,title,image\ng1,Good One,small.png\ng2,Good Two,\n")
    assert run_import(source=str(csv_path), workers=2).counts.images_ok == 1
    before = client.get("/api/cars/")

    report = run_import(source=str(csv_path), workers=2)

    assert (report.counts.unchanged, report.counts.images_ok) == (2, 0), report.summary()
    assert client.get("/api/cars/", HTTP_IF_NONE_MATCH=before["ETag"]).status_code == 304


def test_different_urls_have_different_etags(client, catalog):
    etags = [client.get(url)["ETag"] for url in _cars_urls(catalog)]
    etags.append(client.get("/api/cars/default/")["ETag"])
    assert len(set(etags)) == len(etags)


def test_a_cached_page_is_answered_without_the_view_and_a_new_version_is_a_new_key(
    client, catalog, monkeypatch, django_assert_num_queries
):
    from django.core.cache import cache

    from cars.api import views

    first = client.get("/api/cars/?limit=3")
    rendered = []
    real_get = views.CarListView.get
    monkeypatch.setattr(
        views.CarListView, "get", lambda *a, **kw: rendered.append(1) or real_get(*a, **kw)
    )
    asked = []
    real_cache_get = cache.get
    monkeypatch.setattr(cache, "get", lambda key, *a: asked.append(key) or real_cache_get(key))

    with django_assert_num_queries(0):  # the version is read past Django's query log
        again = client.get("/api/cars/?limit=3")

    assert rendered == []
    assert (again.status_code, again.content, again["ETag"]) == (200, first.content, first["ETag"])
    assert again["X-Request-ID"] != first["X-Request-ID"]  # per request, never replayed
    assert dict(again.headers.items()).keys() == dict(first.headers.items()).keys()
    assert (again["Link"], again["X-Total-Count"]) == (first["Link"], first["X-Total-Count"])
    bump_catalog_version()
    after = client.get("/api/cars/?limit=3")
    assert after["ETag"] != first["ETag"] and rendered == [1]
    assert [key for key in asked if key.startswith("cars:response:")] == [
        "cars:response:" + first["ETag"].strip('"'),
        "cars:response:" + after["ETag"].strip('"'),  # a new version is a new key
    ]


def test_a_cache_whose_set_returns_a_value_still_answers_the_page(client, catalog, monkeypatch):
    """django-redis' `set` returns True; a post-render callback's return value replaces
    the response, so storing a page once answered `True` (a 500 behind gunicorn)."""
    from django.core.cache import cache

    real_set = cache.set
    monkeypatch.setattr(cache, "set", lambda *a, **kw: real_set(*a, **kw) or True)
    first = client.get("/api/cars/?limit=2")
    assert first.status_code == 200 and len(first.json()) == 2
    assert client.get("/api/cars/?limit=2").content == first.content


def test_a_cached_page_carries_the_security_and_cors_headers_of_the_current_settings(
    catalog, settings, monkeypatch, django_assert_num_queries
):
    """The middlewares compute their headers on a hit too: a settings change shows at once
    (a cached answer used to replay the headers of the settings it was made under)."""
    from django.test import Client

    from cars.api import serializers

    url, origin = "/api/cars/web/?limit=3", "https://app.example"
    settings.CORS_ALLOWED_ORIGINS = [origin]
    first = Client().get(url, HTTP_ORIGIN=origin)
    assert first["Access-Control-Allow-Origin"] == origin
    assert (first["Referrer-Policy"], first["X-Frame-Options"]) == ("same-origin", "DENY")
    serialized = []
    real = serializers.CarSerializer.to_representation
    monkeypatch.setattr(
        serializers.CarSerializer,
        "to_representation",
        lambda self, item: serialized.append(1) or real(self, item),
    )
    settings.CORS_ALLOWED_ORIGINS = ["https://other.example"]
    settings.SECURE_REFERRER_POLICY = "no-referrer"
    settings.X_FRAME_OPTIONS = "SAMEORIGIN"

    # A new client: its middlewares are made under the new settings, as after a restart.
    with django_assert_num_queries(0):
        refused = Client().get(url, HTTP_ORIGIN=origin)
        other = Client().get(url, HTTP_ORIGIN="https://other.example")

    assert serialized == []  # both from the cache
    assert refused.content == other.content == first.content
    assert refused["ETag"] == other["ETag"] == first["ETag"]
    assert "Access-Control-Allow-Origin" not in refused
    assert other["Access-Control-Allow-Origin"] == "https://other.example"
    assert (other["Referrer-Policy"], other["X-Frame-Options"]) == ("no-referrer", "SAMEORIGIN")


def test_a_rate_limited_api_answers_anonymous_clients_from_the_cache_and_counts_them(
    client, catalog, settings, monkeypatch
):
    """Throttles run inside DRF, so a rate limit used to turn the cache off. Now a client
    that is surely anonymous gets the cached page once the throttle counted it; one that
    may be signed in (a session cookie, real or forged) goes to the view and its throttle."""
    from cars.api import views
    from core.throttling import AnonThrottle

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_CLASSES": ["core.throttling.AnonThrottle"],
        "DEFAULT_THROTTLE_RATES": {"anon": "3/min"},
    }
    # DRF reads a view's throttles and their rates once, at import, as CARS_ANON_RATE is
    # read at start: set them as a process started with the limit has them.
    monkeypatch.setattr(AnonThrottle, "THROTTLE_RATES", {"anon": "3/min"})
    monkeypatch.setattr(views.CarListView, "throttle_classes", [AnonThrottle])
    rendered = []
    real_get = views.CarListView.get
    monkeypatch.setattr(
        views.CarListView, "get", lambda *a, **kw: rendered.append(1) or real_get(*a, **kw)
    )
    first = client.get("/api/cars/?limit=2")
    assert client.get("/api/cars/?limit=2").content == first.content
    assert rendered == [1], "the second page is a hit"
    assert client.get("/api/cars/?limit=2", HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    third = client.get("/api/cars/?limit=2")
    assert third.status_code == 200 and rendered == [1]
    over = client.get("/api/cars/?limit=2")
    assert over.status_code == 429 and int(over["Retry-After"]) > 0
    assert "throttled" in over.json()["detail"].lower()
    client.cookies["sessionid"] = "forged"  # not served from the cache: DRF judges it
    assert client.get("/api/cars/?limit=2").status_code == 429


# --------------------------------------------------------------------------- no I/O in requests


def test_reads_touch_neither_the_storage_nor_pillow(client, catalog, monkeypatch):
    pk = catalog.ids["Yellow Roadster"]
    urls = ["/api/cars/", "/api/cars/web/", "/api/cars/mobile/", f"/api/cars/{pk}/"]
    urls += [f"/api/cars/web/{pk}/", "/api/cars/?search=yellow"]
    before = {url: client.get(url).json() for url in urls}
    bump_catalog_version()  # no response may come from a cache of the calls above

    calls = []

    def forbidden(name):
        def fail(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} called inside an API request")

        return fail

    storage_class = default_storage.__class__
    for name in ("exists", "open", "size", "listdir", "path"):
        monkeypatch.setattr(storage_class, name, forbidden(f"storage.{name}"))
    monkeypatch.setattr(PIL.Image, "open", forbidden("PIL.Image.open"))

    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.content[:300])
        assert response.json() == before[url], url
    assert calls == []
    detail = client.get(f"/api/cars/{pk}/").json()
    assert all(entry["url"].startswith("http://") for entry in detail["images"].values())


def test_reads_still_answer_from_the_database_when_redis_is_down(client, catalog):
    """SPEC §5: Redis unavailable at request time -> reads still 200 (production config)."""
    dead_redis = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {
                "IGNORE_EXCEPTIONS": True,
                "SOCKET_CONNECT_TIMEOUT": 0.5,
                "SOCKET_TIMEOUT": 0.5,
            },
        }
    }
    pk = catalog.ids["Yellow Roadster"]
    urls = ["/api/cars/", "/api/cars/web/?search=yellow", f"/api/cars/{pk}/"]
    expected = {url: client.get(url).json() for url in urls}
    with override_settings(CACHES=dead_redis):
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (url, response.content[:300])
            assert response.json() == expected[url]
        assert client.get("/api/cars/")["X-Total-Count"] == "7"


# --------------------------------------------------------------------------- writes, errors


WRITE_METHODS = ["post", "put", "patch", "delete"]


@pytest.fixture
def write_urls(many_cars) -> list[str]:
    pk = many_cars[0].pk
    return ["/api/cars/", "/api/cars/web/", f"/api/cars/{pk}/", f"/api/cars/web/{pk}/"]


@pytest.mark.parametrize("method", WRITE_METHODS)
def test_writes_are_a_json_405_for_anonymous_clients(client, write_urls, method):
    for url in write_urls:
        response = getattr(client, method)(
            url, data=json.dumps({"title": "hacked"}), content_type="application/json"
        )
        assert_json_error(response, 405)
    assert not Car.objects.filter(title="hacked").exists()
    assert Car.objects.count() == N_BULK


@pytest.mark.parametrize("method", WRITE_METHODS)
def test_writes_are_a_json_405_even_for_a_superuser(admin_client, write_urls, method):
    for url in write_urls:
        response = getattr(admin_client, method)(
            url, data=json.dumps({"title": "hacked"}), content_type="application/json"
        )
        assert_json_error(response, 405)
    assert Car.objects.count() == N_BULK


@pytest.mark.parametrize(
    "url",
    ["/api/whatever/", "/api/", "/api/cars/1/extra/", "/api/cars/web/abc/", "/api/cars-x/"],
)
def test_unknown_api_urls_are_a_json_404(client, db, url):
    assert_json_error(client.get(url), 404)


def test_unknown_api_urls_are_json_even_with_debug_on(client, db, settings):
    settings.DEBUG = True
    assert_json_error(client.get("/api/whatever/"), 404)


# --------------------------------------------------------------------------- schema, docs


def test_openapi_schema_describes_the_cars_endpoints_and_parameters(client, db):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    platform_paths = [f"/api/cars/{name}/" for name in ("default", "web", "mobile")]
    for path in ("/api/cars/", "/api/cars/{id}/", *platform_paths):
        assert "get" in paths[path], path
    for path in platform_paths:
        assert "get" in paths[path + "{id}/"], path
    for path in ("/api/cars/", *platform_paths):
        names = {p["name"] for p in paths[path]["get"]["parameters"] if p["in"] == "query"}
        assert {"limit", "offset", "cursor", "search", "ordering"} <= names, path
    # OpenAPI forbids two templated paths that differ only by their parameters' names:
    # `/api/cars/{platform}/` would be `/api/cars/{id}/`, whose answer is a car.
    shapes = [re.sub(r"\{[^}]+\}", "{}", path) for path in paths]
    assert len(shapes) == len(set(shapes))


def test_openapi_schema_is_served_as_yaml_by_default(client, db):
    response = client.get("/api/schema/")
    assert response.status_code == 200
    assert b"/api/cars/web/{id}/" in response.content


def test_interactive_docs_page_is_html(client, db):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()


def test_spectacular_validates_the_schema_without_warnings(tmp_path, capsys):
    target = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    assert "/api/cars/web/{id}/" in target.read_text()


# --------------------------------------------------------------------------- CORS


def test_cors_allows_the_configured_origin_only(client, many_cars, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://app.example"]

    allowed = client.get("/api/cars/", HTTP_ORIGIN="https://app.example")
    assert allowed.status_code == 200
    assert allowed["Access-Control-Allow-Origin"] == "https://app.example"
    exposed = {h.strip().lower() for h in allowed["Access-Control-Expose-Headers"].split(",")}
    assert {"etag", "link", "x-total-count"} <= exposed

    other = client.get("/api/cars/", HTTP_ORIGIN="https://evil.example")
    assert other.status_code == 200
    assert "Access-Control-Allow-Origin" not in other

    preflight = client.options(
        "/api/cars/",
        HTTP_ORIGIN="https://app.example",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert preflight["Access-Control-Allow-Origin"] == "https://app.example"


# --------------------------------------------------------------------------- media serving


def test_media_is_served_from_the_current_media_root(client, catalog, settings, tmp_path):
    missing = client.get("/media/warm-up")  # the URLconf is loaded under the first MEDIA_ROOT...
    settings.MEDIA_ROOT = str(tmp_path / "other-media")  # ...then the media moves
    # Bytes no car shows yet: a picture stored before the move would stay in the old root.
    (catalog.folder / "moved.png").write_bytes(png_bytes(120, 80))
    catalog.reimport("r9,Moved Car,After the move,moved.png\n")

    body = client.get("/api/cars/", {"search": "moved"}).json()
    path = local(body[0]["image"])
    response = client.get(path)
    assert response.status_code == 200
    stored = Path(settings.MEDIA_ROOT) / path.removeprefix("/media/")
    assert b"".join(response.streaming_content) == stored.read_bytes()
    # Names carry the content's hash: a URL never serves other bytes, so caches keep it.
    assert response["Cache-Control"] == "public, max-age=31536000, immutable"
    assert missing.status_code == 404
    assert "immutable" not in missing.get("Cache-Control", ""), "a 404 may turn into a file"

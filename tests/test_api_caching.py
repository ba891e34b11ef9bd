"""The API response cache's keys and ETags (cars.api.caching, issue #22).

Only what makes a page makes a key: the query as the view parses it (an unknown parameter
is ignored, a default written out is the default), and the rendering DRF negotiates for
`Accept`. Entries are counted by the cache backend itself: a local-memory cache with room
for every request (a regression shows as thousands of entries, not a culled few hundred)
and the real Redis on 127.0.0.1:6379 (database 15, a key prefix of the test's own, so
nothing else's keys are read or deleted).

Every test runs on SQLite and on PostgreSQL (`DATABASE_URL=postgres://...`).
"""

import base64
import secrets

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client, override_settings
from rest_framework.negotiation import DefaultContentNegotiation

from cars.api import caching, views
from cars.catalog import bump_catalog_version
from cars.models import Car
from tests.support.stack import REDIS_HOST, REDIS_PORT, missing, redis_available

N_CARS = 30
REQUESTS = 10_000
LOCMEM = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "LOCATION": "test-api-caching",
        "OPTIONS": {"MAX_ENTRIES": 10 * REQUESTS},  # never culls during a test
    }
}


@pytest.fixture
def cars(db) -> list[Car]:
    made = Car.objects.bulk_create(
        Car(external_key=f"c{i}", title=f"car {i}", description=f"shared words {i}")
        for i in range(N_CARS)
    )
    bump_catalog_version()
    return made


@pytest.fixture
def locmem():
    with override_settings(CACHES=LOCMEM):
        cache.clear()
        yield
        cache.clear()


@pytest.fixture
def redis_cache():
    """The production backend (django-redis) on the real server, in a namespace of this
    test's own; its keys are deleted afterwards, no other's."""
    if not redis_available():
        missing("Redis")
    config = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://{REDIS_HOST}:{REDIS_PORT}/15",
            "KEY_PREFIX": f"test-api-caching-{secrets.token_hex(4)}",
        }
    }
    with override_settings(CACHES=config):
        cache.delete_pattern("*")
        yield
        cache.delete_pattern("*")


def cache_entries() -> int:
    """Entries in the default cache, as its backend counts them."""
    if hasattr(cache, "delete_pattern"):  # django-redis: this test's key prefix only
        return len(cache.keys("*"))
    return len(cache._cache)  # LocMemCache


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def junk_urls(count: int) -> list[str]:
    """`count` distinct spellings of the first page: unknown parameters, DRF's `format`,
    and the defaults written out in several ways."""
    default = django_settings.CARS_PAGE_SIZE
    shapes = [
        "a={i}",
        "utm_source=ad{i}",
        "limit={default}&x{i}=1",
        "LIMIT={i}",  # names are case-sensitive: not `limit`
        "format=json&n={i}",
        "search=&z={i}",
        "search=%20%20&z{i}=",
        "ordering=id&q{i}=",
        "ordering=&k={i}",
        "cursor=&c={i}",
        "limit=0{default}&j={i}",
        "limit=%2B{default}&ordering=id&w={i}",
    ]
    return [
        "/api/cars/?" + shapes[i % len(shapes)].format(i=i, default=default) for i in range(count)
    ]


def assert_junk_adds_no_entry(client: Client) -> tuple[int, int]:
    first = client.get("/api/cars/")
    assert first.status_code == 200 and len(first.json()) == N_CARS
    entries = cache_entries()
    assert entries >= 1
    for url in junk_urls(REQUESTS):
        response = client.get(url)
        assert response.status_code == 200, url
        assert response["ETag"] == first["ETag"], url
        assert response.content == first.content, url
    return entries, cache_entries()


def test_ten_thousand_junk_parameters_add_no_cache_entry(client, cars, locmem):
    before, after = assert_junk_adds_no_entry(client)
    assert after == before
    assert len(caching.PARSED) <= 256  # each process's own memo of spellings is bounded


def test_ten_thousand_junk_parameters_add_no_entry_to_redis(client, cars, redis_cache):
    before, after = assert_junk_adds_no_entry(client)
    assert after == before


def test_unknown_parameters_never_show_in_the_links(client, cars, locmem):
    junk = client.get("/api/cars/?limit=5&utm_source=ad&ordering=id")
    plain = client.get("/api/cars/?limit=5")
    assert "utm_source" not in junk["Link"]
    assert junk["Link"] == plain["Link"] and junk["ETag"] == plain["ETag"]
    assert "limit=5" in plain["Link"] and "ordering=id" in plain["Link"]


def spellings(cars: list[Car]) -> dict[str, list[str]]:
    """Pages, each with URLs that spell it differently; every page is another."""
    default = django_settings.CARS_PAGE_SIZE
    pk = cars[4].pk
    same_cursor = [b64(f"[{pk},{pk},0]"), b64(f"[{pk}, {pk}, 0]") + "==", b64(f"[1, {pk}, false]")]
    return {
        "first page": [
            "/api/cars/",
            f"/api/cars/?limit={default}",
            f"/api/cars/?ordering=id&limit={default}",
            "/api/cars/?ordering=&search=%20&cursor=&format=json",
        ],
        "five": ["/api/cars/?limit=5", "/api/cars/?limit=05&x=1", "/api/cars/?ordering=id&limit=5"],
        "offset 0 (offset links)": ["/api/cars/?offset=0", "/api/cars/?offset=00&junk"],
        "descending": ["/api/cars/?ordering=-id", "/api/cars/?search=&ordering=-id"],
        "search by relevance": [
            "/api/cars/?search=shared",
            "/api/cars/?search=%20shared%20",
            "/api/cars/?search=shared&offset=0&ordering=",
        ],
        "search by id": ["/api/cars/?search=shared&ordering=id"],
        "after a cursor": [f"/api/cars/?cursor={token}" for token in same_cursor],
        "after another cursor": [f"/api/cars/?cursor={b64(f'[{pk + 1},{pk + 1},0]')}"],
        "web": ["/api/cars/web/", "/api/cars/web/?limit=0100&a=b"],
        "default platform path": ["/api/cars/default/"],
        "a car": [f"/api/cars/{pk}/", f"/api/cars/0{pk}/", f"/api/cars/{pk}/?limit=3&x=1"],
        "a car on the web": [f"/api/cars/web/{pk}/"],
    }


def test_equal_pages_share_an_etag_and_different_pages_do_not(client, cars, locmem):
    tags = {}
    for page, urls in spellings(cars).items():
        seen = {client.get(url)["ETag"] for url in urls}
        assert len(seen) == 1, (page, urls)
        tags[page] = seen.pop()
    assert len(set(tags.values())) == len(tags), tags
    before = cache_entries()
    for urls in spellings(cars).values():
        for url in urls:
            response = client.get(url)
            assert client.get(url, HTTP_IF_NONE_MATCH=response["ETag"]).status_code == 304
    assert cache_entries() == before  # every spelling answered from its page's entry


def count_calls(monkeypatch, owner, name: str) -> list[int]:
    calls: list[int] = []
    real = getattr(owner, name)
    if isinstance(owner.__dict__.get(name), staticmethod):
        monkeypatch.setattr(owner, name, staticmethod(lambda *a: calls.append(1) or real(*a)))
    else:
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_request_parses_its_query_and_negotiates_once(client, cars, locmem, monkeypatch):
    parsed = count_calls(monkeypatch, views.CarListView, "parse_query")
    negotiated = count_calls(monkeypatch, DefaultContentNegotiation, "select_renderer")
    rendered = count_calls(monkeypatch, views.CarListView, "get")

    miss = client.get("/api/cars/?limit=3&ordering=title")
    assert (len(parsed), len(negotiated), len(rendered)) == (1, 1, 1)
    hit = client.get("/api/cars/?ordering=title&limit=3")  # another spelling: parsed
    assert (len(parsed), len(negotiated), len(rendered)) == (2, 2, 1)
    assert hit.content == miss.content
    for _ in range(3):  # a spelling seen before: neither parsed nor negotiated again
        assert client.get("/api/cars/?limit=3&ordering=title").content == miss.content
    assert (len(parsed), len(negotiated), len(rendered)) == (2, 2, 1)


INDENTED = "application/json; indent=8"


def test_an_indented_page_is_its_own_entry_and_never_reaches_other_clients(
    cars, locmem, monkeypatch
):
    """DRF pretty-prints for `Accept: application/json; indent=N`. The first client's
    choice used to be what everyone got for an hour."""
    rendered = count_calls(monkeypatch, views.CarListView, "get")
    pretty, plain = Client(HTTP_ACCEPT=INDENTED), Client()

    first = pretty.get("/api/cars/?limit=2")
    compact = plain.get("/api/cars/?limit=2")
    again = [pretty.get("/api/cars/?limit=2"), plain.get("/api/cars/?limit=2")]

    assert first.content.startswith(b"[\n        {")  # eight spaces
    assert b"\n" not in compact.content
    assert first.json() == compact.json()
    assert [r.content for r in again] == [first.content, compact.content]
    assert len(rendered) == 2  # one per rendering; the repeats came from the cache
    assert first["ETag"] != compact["ETag"]
    for response in (first, compact, *again):
        assert "Accept" in response["Vary"]
    # Spellings of the same rendering share its entry; indent=0 is DRF's compact.
    same = {
        "application/json; indent=8": first,
        "application/json;indent=08; charset=utf-8": first,
        "application/json; indent=99": first,  # DRF caps the indent at 8
        "*/*; indent=8": first,
        "application/json; indent=0": compact,
        "application/json": compact,
        "application/*": compact,
        "text/html;q=0.9, application/json": compact,
    }
    for accept, expected in same.items():
        response = Client(HTTP_ACCEPT=accept).get("/api/cars/?limit=2")
        assert (response.content, response["ETag"]) == (expected.content, expected["ETag"])
    assert len(rendered) == 2


def test_an_unacceptable_accept_is_a_406_even_with_the_page_cached(client, cars, locmem):
    assert client.get("/api/cars/?limit=2").status_code == 200
    refused = Client(HTTP_ACCEPT="text/html").get("/api/cars/?limit=2")
    assert refused.status_code == 406
    assert refused["Content-Type"] == "application/json"
    assert client.get("/api/cars/?limit=2&format=xml").status_code == 404  # DRF's answer


@pytest.mark.parametrize("host", ["TESTSERVER", "testserver:8123", "testserver:080"])
def test_a_host_spelled_another_way_is_answered_but_never_stored(client, cars, locmem, host):
    """Django takes any port and case for an allowed host, and links repeat them."""
    canonical = client.get("/api/cars/?limit=5")
    entries = cache_entries()
    for _ in range(2):
        other = client.get("/api/cars/?limit=5", HTTP_HOST=host)
        assert other.status_code == 200 and other.json() == canonical.json()
        assert f"//{host}/" in other["Link"]
        assert (
            client.get(
                "/api/cars/?limit=5", HTTP_HOST=host, HTTP_IF_NONE_MATCH=other["ETag"]
            ).status_code
            == 304
        )
    assert cache_entries() == entries
    assert client.get("/api/cars/?limit=5").content == canonical.content


def test_a_cached_page_and_its_304_follow_a_cache_control_setting_changed_after_storing(
    cars, locmem, settings
):
    """The headers every answer carries are made once per settings, not stored with the
    page: a change shows on the next hit."""
    client = Client()
    settings.CARS_API_MAX_AGE = 0
    stored = client.get("/api/cars/?limit=5")
    assert stored["Cache-Control"] == "public, max-age=0, must-revalidate"

    settings.CARS_API_MAX_AGE = 300
    hit = client.get("/api/cars/?limit=5")
    not_modified = client.get("/api/cars/?limit=5", HTTP_IF_NONE_MATCH=stored["ETag"])

    assert hit.content == stored.content and hit["ETag"] == stored["ETag"]
    assert hit["Cache-Control"] == not_modified["Cache-Control"] == "public, max-age=300"
    assert not_modified.status_code == 304
    assert hit["Vary"] == stored["Vary"]  # Accept (the view's and ours) and Origin, once each
    varies = [v.strip().lower() for v in hit["Vary"].split(",")]
    assert varies.count("accept") == varies.count("origin") == 1  # Origin: CORS, even without one

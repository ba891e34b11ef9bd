"""Several pictures per car (SPEC §3, §5, §6), end to end.

Feeds name a car's pictures as a list in one cell, a JSON array, further columns or
Shopify's continuation rows; every picture is fetched from the local HTTP server, stored
by content and rendered once, and shown in feed order on the detail, the first being the
car's `image`. A file is deleted only when no car shows it, as a first picture or as a
further one: the tests that check deletions really commit, and count the files on disk.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from django.core.files.storage import default_storage

from cars.catalog import bump_catalog_version
from cars.models import Car, CarPicture, ImageStatus, Picture
from imports import tasks
from imports.lifecycle import create_job
from imports.models import ImageChunk, ImportJob
from imports.pictures.pipeline import CarRef, ImageItem
from imports.pictures.retry import retry_failed_images
from imports.runner import run_chunk
from imports.runner import run_job as run_row_phase
from imports.services import run_import
from imports.sweep import sweep
from tests.support.httpserver import LocalHTTPServer
from tests.support.pictures import LocalMedia, count_renders, picture_bytes

pytestmark = pytest.mark.django_db
JPEG = {"Content-Type": "image/jpeg"}
NO_IMAGES = {"default": None, "web": None, "mobile": None}


# --------------------------------------------------------------------------- helpers


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve(server: LocalHTTPServer, name: str, data: bytes) -> str:
    server.add(f"/{name}", data, headers=JPEG)
    return server.url(f"/{name}")


def write_feed(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def pictures_of(key: str) -> list[tuple[str, str | None, str]]:
    """(reference, content hash or None, status) of each of the car's pictures, in order."""
    car = Car.objects.select_related("picture").get(external_key=key)
    first = (car.source_image_url, car.picture and car.picture.sha256, car.image_status)
    further = car.more_pictures.select_related("picture").order_by("position")
    assert [p.position for p in further] == list(range(1, len(further) + 1))
    return [first, *((p.source_url, p.picture and p.picture.sha256, p.status) for p in further)]


def files_of(*contents: bytes) -> set[str]:
    """The stored files (original and renditions) of these contents."""
    names: set[str] = set()
    for picture in Picture.objects.filter(sha256__in=[sha(data) for data in contents]):
        names |= set(picture.stored_names())
    assert len(names) == 4 * len(set(contents)), "every content stored, with 3 renditions"
    return names


def assert_storage_holds_what_cars_show(media: LocalMedia) -> None:
    """Every file a car shows (first or further picture) is on disk, and nothing else."""
    shown = set(Car.objects.exclude(picture=None).values_list("picture", flat=True))
    shown |= set(CarPicture.objects.exclude(picture=None).values_list("picture", flat=True))
    assert set(Picture.objects.values_list("pk", flat=True)) == shown, "a picture no car shows"
    names = set()
    for picture in Picture.objects.all():
        names |= set(picture.stored_names())
    assert media.names() == names


def detail(client, key: str) -> dict:
    response = client.get(f"/api/cars/{Car.objects.get(external_key=key).pk}/")
    assert response.status_code == 200, response.content[:300]
    return response.json()


def media_name(url: str) -> str:
    return url.split("/media/", 1)[1]


@pytest.fixture
def media(settings) -> LocalMedia:
    return LocalMedia(Path(settings.MEDIA_ROOT))


@pytest.fixture
def three(http_server) -> tuple[list[bytes], list[str]]:
    """Three distinct pictures served at /1.jpg, /2.jpg, /3.jpg."""
    contents = [picture_bytes(n) for n in range(1, 4)]
    return contents, [serve(http_server, f"{n}.jpg", c) for n, c in enumerate(contents, 1)]


# --------------------------------------------------------------------------- feeds


def comma_list(urls: list[str]) -> str:
    return f'id,title,images\ngolf,Golf,"{",".join(urls)}"\n'


def json_array(urls: list[str]) -> str:
    cell = json.dumps(urls).replace('"', '""')  # quoted as CSV quotes
    return f'id,title,images\ngolf,Golf,"{cell}"\n'


def additional_image_link(urls: list[str]) -> str:
    first, *more = urls
    return f'id,title,image_link,additional_image_link\ngolf,Golf,{first},"{",".join(more)}"\n'


def shopify(urls: list[str]) -> str:
    rows = ["Handle,Title,Image Src,Image Position", f"golf,Golf,{urls[0]},1"]
    rows += [f"golf,,{url},{n}" for n, url in enumerate(urls[1:], start=2)]
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("feed", [comma_list, json_array, additional_image_link, shopify])
def test_every_picture_a_feed_names_is_stored_in_order_and_the_first_is_the_image(
    feed, three, http_server, tmp_path, client, media
):
    contents, urls = three
    source = write_feed(tmp_path / "cars.csv", feed(urls))

    report = run_import(source=str(source), workers=4)

    assert report.summary().endswith("images: 3 ok, 0 failed"), report.summary()
    assert not report.image_failures and not any("not stored" in w for w in report.warnings)
    ready = ImageStatus.READY
    assert pictures_of("golf") == [(u, sha(c), ready) for u, c in zip(urls, contents, strict=True)]
    assert media.names() == files_of(*contents)
    body = detail(client, "golf")
    assert [p["source_url"] for p in body["pictures"]] == urls
    assert body["pictures"][0]["images"] == body["images"]
    assert body["image"] == body["images"]["default"]["url"]
    for picture, data in zip(body["pictures"], contents, strict=True):
        assert picture["error"] is None
        names = {media_name(entry["url"]) for entry in picture["images"].values()}
        assert names == files_of(data) - {f"images/{sha(data)}.jpg"}
    assert dict(http_server.hits) == {f"/{n}.jpg": 1 for n in (1, 2, 3)}


def test_the_same_bytes_under_two_urls_are_stored_and_rendered_once(
    http_server, tmp_path, client, media, monkeypatch
):
    one, two = picture_bytes(1), picture_bytes(2)
    a = serve(http_server, "a.jpg", one)
    a_again = serve(http_server, "mirror/a.jpg", one)
    b = serve(http_server, "b.jpg", two)
    b_again = serve(http_server, "mirror/b.jpg", two)
    source = write_feed(
        tmp_path / "cars.csv",
        f'id,title,images\ngolf,Golf,"{a},{a_again},{b}"\npolo,Polo,"{b_again},{a}"\n',
    )

    with count_renders(monkeypatch, tmp_path / "renders.log") as renders:
        report = run_import(source=str(source), workers=4)

    assert sorted(renders()) == sorted([sha(one), sha(two)]), "each content rendered once"
    assert report.summary().endswith("images: 5 ok, 0 failed")
    assert (report.pictures.new, report.pictures.shared) == (2, 3)
    assert Picture.objects.count() == 2
    assert media.names() == files_of(one, two)
    # Golf names `one` twice: its detail shows it once, at its first place.
    assert [p["source_url"] for p in detail(client, "golf")["pictures"]] == [a, b]
    polo = detail(client, "polo")["pictures"]
    assert [p["source_url"] for p in polo] == [b_again, a]
    assert polo[1]["images"] == detail(client, "golf")["pictures"][0]["images"]


def test_a_reimport_of_an_unchanged_feed_fetches_and_writes_nothing(
    three, http_server, tmp_path, client
):
    _, urls = three
    source = write_feed(tmp_path / "cars.csv", comma_list(urls))
    run_import(source=str(source), workers=4)
    before = detail(client, "golf")
    hits = dict(http_server.hits)

    report = run_import(source=str(source), workers=4)

    assert report.summary() == (
        "created 0, updated 0, unchanged 1, deleted 0, rejected 0 rows; images: 0 ok, 0 failed"
    )
    assert dict(http_server.hits) == hits, "no picture fetched again"
    assert detail(client, "golf") == before


@pytest.mark.django_db(transaction=True)
def test_a_changed_list_moves_kept_pictures_fetches_new_ones_and_deletes_what_is_gone(
    http_server, tmp_path, client, media
):
    contents = [picture_bytes(n) for n in range(1, 6)]
    u1, u2, u3, u4, u5 = (serve(http_server, f"{n}.jpg", c) for n, c in enumerate(contents, 1))
    source = tmp_path / "cars.csv"
    run_import(source=str(write_feed(source, comma_list([u1, u2, u3, u4]))), workers=4)
    kept_rows = dict(CarPicture.objects.values_list("source_url", "pk"))
    hits = dict(http_server.hits)

    # u2 and u4 swap places, u3 goes, u5 comes.
    report = run_import(source=str(write_feed(source, comma_list([u1, u4, u5, u2]))), workers=4)

    assert report.summary().startswith("created 0, updated 1, unchanged 0"), report.summary()
    assert report.summary().endswith("images: 1 ok, 0 failed"), "only the new one fetched"
    assert dict(http_server.hits) == {**hits, "/5.jpg": 1}
    order = [(u1, 0), (u4, 3), (u5, 4), (u2, 1)]
    ready = ImageStatus.READY
    assert pictures_of("golf") == [(u, sha(contents[n]), ready) for u, n in order]
    moved = dict(CarPicture.objects.values_list("source_url", "pk"))
    assert (moved[u2], moved[u4]) == (kept_rows[u2], kept_rows[u4]), "moved, not made again"
    assert not Picture.objects.filter(sha256=sha(contents[2])).exists()
    assert media.names() == files_of(*(contents[n] for n in (0, 1, 3, 4)))
    assert [p["source_url"] for p in detail(client, "golf")["pictures"]] == [u1, u4, u5, u2]

    # Down to its first picture: every further one goes, with its files.
    report = run_import(source=str(write_feed(source, comma_list([u1]))), workers=4)
    assert report.counts.updated == 1
    assert not CarPicture.objects.exists()
    assert media.names() == files_of(contents[0])
    assert_storage_holds_what_cars_show(media)


@pytest.mark.django_db(transaction=True)
def test_a_refreshed_further_picture_with_new_bytes_releases_the_old_one(
    http_server, tmp_path, client, media
):
    old, new = picture_bytes(7), picture_bytes(8)
    first = serve(http_server, "1.jpg", picture_bytes(1))
    second = serve(http_server, "2.jpg", old)
    source = write_feed(tmp_path / "cars.csv", comma_list([first, second]))
    run_import(source=str(source), workers=4)
    assert pictures_of("golf")[1][1] == sha(old)

    serve(http_server, "2.jpg", new)  # the same URL, other bytes
    report = run_import(source=str(source), workers=4, refresh_images=True)

    assert report.summary().endswith("images: 2 ok, 0 failed"), report.summary()
    assert pictures_of("golf")[1] == (second, sha(new), ImageStatus.READY)
    assert not Picture.objects.filter(sha256=sha(old)).exists(), "no place shows it"
    assert media.names() == files_of(picture_bytes(1), new)
    assert_storage_holds_what_cars_show(media)


def delete_by(way: str, keys: list[str], source: Path, rows: dict[str, str], admin_client):
    """Delete the cars of `keys`: pruned from the source, or with the admin's bulk action."""
    if way == "prune":
        for key in keys:
            del rows[key]
        write_feed(source, "id,title,images\n" + "".join(rows.values()))
        report = run_import(source=str(source), prune=True, workers=4)
        assert report.counts.deleted == len(keys), report.summary()
        return
    ids = list(Car.objects.filter(external_key__in=keys).values_list("pk", flat=True))
    response = admin_client.post(
        "/admin/cars/car/",
        {"action": "delete_selected", "_selected_action": ids, "post": "yes"},
    )
    assert response.status_code == 302, response.content[:300]
    assert not Car.objects.filter(pk__in=ids).exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", ["prune", "admin_delete"])
def test_deleted_cars_take_their_further_pictures_files_only_when_no_car_shows_them(
    way, http_server, tmp_path, media, admin_client
):
    """Golf shows a, b, c; Polo shows d, then b; Up shows c first. Deleting Golf deletes
    a's files only; deleting Polo then deletes b's and d's."""
    a, b, c, d = (picture_bytes(n) for n in range(1, 5))
    url = {
        name: serve(http_server, f"{name}.jpg", data)
        for name, data in zip("abcd", (a, b, c, d), strict=True)
    }
    rows = {
        "golf": f'golf,Golf,"{url["a"]},{url["b"]},{url["c"]}"\n',
        "polo": f'polo,Polo,"{url["d"]},{url["b"]}"\n',
        "up": f"up,Up,{url['c']}\n",
    }
    source = write_feed(tmp_path / "cars.csv", "id,title,images\n" + "".join(rows.values()))
    report = run_import(source=str(source), workers=4)
    assert report.summary().endswith("images: 6 ok, 0 failed")
    assert media.names() == files_of(a, b, c, d)

    delete_by(way, ["golf"], source, rows, admin_client)

    assert media.names() == files_of(b, c, d), "b and c are still shown by other cars"
    assert not Picture.objects.filter(sha256=sha(a)).exists()
    assert_storage_holds_what_cars_show(media)

    delete_by(way, ["polo"], source, rows, admin_client)

    assert media.names() == files_of(c)
    assert_storage_holds_what_cars_show(media)
    assert not CarPicture.objects.exists()


def test_a_car_whose_second_picture_fails_keeps_the_others_and_reports_why(
    three, http_server, tmp_path, client
):
    contents, (u1, u2, u3) = three
    http_server.add("/2.jpg", b"gone", status=404)
    text = f'id,title,images\nup,Up,\ngolf,Golf,"{u1},{u2},{u3}"\n'  # Golf on line 3
    source = write_feed(tmp_path / "cars.csv", text)

    report = run_import(source=str(source), workers=4)

    assert report.summary().endswith("images: 2 ok, 1 failed"), report.summary()
    [failure] = report.as_dict()["image_failures"]
    assert {k: failure[k] for k in ("line", "key", "url", "reason")} == {
        "line": 3,
        "key": "golf",
        "url": u2,
        "reason": "http_error",
    }
    assert pictures_of("golf") == [
        (u1, sha(contents[0]), ImageStatus.READY),
        (u2, None, ImageStatus.FAILED),
        (u3, sha(contents[2]), ImageStatus.READY),
    ]
    pictures = detail(client, "golf")["pictures"]
    assert pictures[1] == {"source_url": u2, "error": "http_error", "images": NO_IMAGES}
    assert pictures[2]["images"]["web"] is not None

    # The admin's retry fetches the failed picture again, and only it.
    http_server.add("/2.jpg", contents[1], headers=JPEG)
    hits = dict(http_server.hits)
    outcome = retry_failed_images(car_ids=Car.objects.values_list("pk", flat=True))
    assert (outcome.ok, outcome.failed, outcome.skipped) == (1, 0, 0)
    assert dict(http_server.hits) == {**hits, "/2.jpg": hits["/2.jpg"] + 1}
    assert pictures_of("golf")[1] == (u2, sha(contents[1]), ImageStatus.READY)


def test_a_failed_further_picture_is_fetched_again_by_the_next_import(three, http_server, tmp_path):
    contents, (u1, u2, u3) = three
    http_server.add("/3.jpg", b"not yet", status=503)
    source = write_feed(tmp_path / "cars.csv", comma_list([u1, u2, u3]))
    assert run_import(source=str(source), workers=4).counts.images_failed == 1

    http_server.add("/3.jpg", contents[2], headers=JPEG)
    report = run_import(source=str(source), workers=4)

    assert report.summary().endswith("images: 1 ok, 0 failed"), "only the failed one again"
    assert pictures_of("golf")[2] == (u3, sha(contents[2]), ImageStatus.READY)


# --------------------------------------------------------------------------- the API


def test_the_detail_lists_every_picture_with_attributes_and_sanitised_html(
    three, tmp_path, client, monkeypatch, django_assert_max_num_queries
):
    _, urls = three
    text = (
        "id,title,description,images,colour\n"
        f'golf,Golf,"<p>Red <b>and</b> fast<script>x()</script></p>","{",".join(urls)}",red\n'
        f"polo,Polo,Plain text,{urls[0]},\n"
    )
    run_import(source=str(write_feed(tmp_path / "cars.csv", text)), workers=4)
    golf = detail(client, "golf")
    bump_catalog_version()  # the next answers are made again, not cached

    calls = []
    for name in ("exists", "open", "size", "listdir", "path"):
        monkeypatch.setattr(
            default_storage.__class__, name, lambda *a, _n=name, **k: calls.append(_n)
        )
    pk = Car.objects.get(external_key="golf").pk
    with django_assert_max_num_queries(2):  # the car, then its further pictures
        body = client.get(f"/api/cars/web/{pk}/").json()

    assert calls == [], "no storage call inside a request"
    assert body == golf | {"image": golf["images"]["web"]["url"]}
    assert body["description"] == "Red and fast"
    assert body["description_html"] == "<p>Red <b>and</b> fast</p>"
    assert body["attributes"] == {"colour": "red"}
    assert [set(p) for p in body["pictures"]] == [{"source_url", "error", "images"}] * 3
    for picture in body["pictures"]:
        assert set(picture["images"]) == {"default", "web", "mobile"}
        for entry in picture["images"].values():
            assert set(entry) == {"url", "width", "height"}
            assert entry["url"].startswith("http://testserver/media/CACHE/images/")
    polo = detail(client, "polo")
    assert (polo["description_html"], polo["attributes"]) == (None, {})
    assert [p["source_url"] for p in polo["pictures"]] == urls[:1]


# --------------------------------------------------------------------------- queued jobs


@pytest.fixture
def sent_chunks(monkeypatch) -> list[int]:
    """The chunk tasks a row phase sends, instead of a broker."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.process_image_chunk, "delay", sent.append)
    return sent


def test_chunks_queued_before_the_upgrade_still_decode_as_first_pictures():
    old = ["https://e.x/1.jpg", [[7, 2, "golf"], [8, 3, "polo"]]]
    item = ImageItem.from_json(old)
    assert item.cars == (CarRef(7, 2, "golf", 0), CarRef(8, 3, "polo", 0))
    again = ImageItem("https://e.x/2.jpg", (CarRef(7, 2, "golf", 3),))
    assert again.to_json() == ["https://e.x/2.jpg", [[7, 2, "golf", 3]]]
    assert ImageItem.from_json(json.loads(json.dumps(again.to_json()))) == again


def test_a_queued_job_stores_every_picture_even_from_chunks_in_the_old_shape(
    three, tmp_path, settings, sent_chunks
):
    settings.CARS_IMAGE_CHUNK = 2
    contents, urls = three
    source = write_feed(tmp_path / "cars.csv", comma_list(urls) + f"polo,Polo,{urls[2]}\n")
    job = create_job(source=str(source))
    ImportJob.objects.filter(pk=job.pk).update(queued=True)
    run_row_phase(job.pk)
    # A chunk written before several pictures per car names first pictures as 3 values.
    for chunk in ImageChunk.objects.all():
        old = [
            [ref, [car[:3] if car[3] == 0 else car for car in cars]] for ref, cars in chunk.items
        ]
        ImageChunk.objects.filter(pk=chunk.pk).update(items=old)

    for chunk_id in sent_chunks:
        run_chunk(chunk_id)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert (job.counts["images_ok"], job.counts["images_failed"]) == (4, 0)
    ready = ImageStatus.READY
    assert pictures_of("golf") == [(u, sha(c), ready) for u, c in zip(urls, contents, strict=True)]
    assert pictures_of("polo") == [(urls[2], sha(contents[2]), ready)]
    assert sweep()["pictures"] == 0, "a picture shown only as a further one is not an orphan"
    assert Picture.objects.count() == 3

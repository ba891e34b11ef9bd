"""The import_csv command and the import service, end to end.

Real CSV files and images on disk, a real local HTTP server, the real database, real
renditions written to a per-test MEDIA_ROOT.

Pictures are stored by content (`images/<sha256>.<ext>`, renditions under
`CACHE/images/<sha256>/`) and their files are deleted once the transaction that removed
the last car showing them commits: the tests that check deletions really commit
(`django_db(transaction=True)`), as the command does.
"""

import hashlib
import io
import json
import os
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from PIL import Image

from cars.models import Car, ImageStatus, Picture
from imports.services import run_import
from imports.sources import SourceError
from tests.support.catalog import small_catalog, write_csv
from tests.support.images import jpeg_bytes, photo_like, png_bytes

pytestmark = pytest.mark.django_db


def import_csv(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_csv", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def summary(out: str) -> str:
    return out.strip().splitlines()[-1]


def media_files(media: Path) -> set[str]:
    return {str(p.relative_to(media)) for p in media.rglob("*") if p.is_file()}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def files_of(car: Car) -> set[str]:
    """The original and every rendition the car shows."""
    return {car.image.name, *(r["name"] for r in car.renditions.values())}


def assert_picture_files(car: Car, sha256: str, extension: str) -> None:
    """The car shows the picture of these bytes, named by content, with every rendition."""
    assert car.picture is not None and car.picture.sha256 == sha256
    assert car.image.name == f"images/{sha256}{extension}"
    assert set(car.renditions) == {"default", "web", "mobile"}
    for entry in car.renditions.values():
        assert re.fullmatch(rf"CACHE/images/{sha256}/[0-9a-f]{{32}}\.jpg", entry["name"]), entry


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A folder with three images and a CSV naming them by relative path."""
    return small_catalog(tmp_path / "catalog")


def test_import_creates_cars_with_originals_and_every_rendition(catalog, settings):
    out, err = import_csv(str(catalog / "cars.csv"))

    assert summary(out) == (
        "created 4, updated 0, unchanged 0, deleted 0, rejected 0 rows; images: 3 ok, 0 failed"
    )
    assert "pictures: 3 new, 0 shared" in err
    alpha = Car.objects.get(external_key="1")
    assert_picture_files(alpha, sha256_of(catalog / "img" / "a.jpg"), ".jpg")
    assert (alpha.picture.width, alpha.picture.height) == (1600, 1200)
    assert alpha.image_status == ImageStatus.READY
    media = Path(settings.MEDIA_ROOT)
    assert (media / alpha.image.name).read_bytes() == (catalog / "img" / "a.jpg").read_bytes()
    for platform, box, progressive in (
        ("default", (1920, 1920), True),
        ("web", (1280, 960), True),
        ("mobile", (640, 480), False),  # SPEC §5: baseline for mobile
    ):
        entry = alpha.renditions[platform]
        assert entry["name"].startswith("CACHE/images/")
        with Image.open(media / entry["name"]) as img:
            assert img.format == "JPEG"
            assert img.size == (entry["width"], entry["height"])
            assert img.width <= box[0] and img.height <= box[1]
            assert bool(img.info.get("progressive")) is progressive
            assert "exif" not in img.info
    assert (alpha.renditions["web"]["width"], alpha.renditions["web"]["height"]) == (1280, 960)
    assert (alpha.renditions["default"]["width"], alpha.renditions["default"]["height"]) == (
        1600,
        1200,
    )  # fit never upscales
    delta = Car.objects.get(external_key="4")
    assert delta.image_status == ImageStatus.NONE and not delta.image and delta.renditions == {}
    assert delta.picture is None
    assert Picture.objects.count() == 3
    assert media_files(media) == {
        name for car in Car.objects.exclude(picture=None) for name in files_of(car)
    }, "one original and one file per platform for each picture, nothing else"


def test_reimport_of_the_same_source_changes_nothing(catalog, settings):
    import_csv(str(catalog / "cars.csv"))
    before = {c.pk: (c.updated_at, c.image.name, c.renditions) for c in Car.objects.all()}
    files_before = media_files(Path(settings.MEDIA_ROOT))

    out, _ = import_csv(str(catalog / "cars.csv"))

    assert summary(out) == (
        "created 0, updated 0, unchanged 4, deleted 0, rejected 0 rows; images: 0 ok, 0 failed"
    )
    after = {c.pk: (c.updated_at, c.image.name, c.renditions) for c in Car.objects.all()}
    assert after == before
    assert media_files(Path(settings.MEDIA_ROOT)) == files_before


@pytest.mark.django_db(transaction=True)
def test_changed_rows_are_updated_and_a_new_image_replaces_the_old_files(catalog, settings):
    import_csv(str(catalog / "cars.csv"))
    alpha = Car.objects.get(external_key="1")
    old_picture, old_files = alpha.picture_id, files_of(alpha)
    (catalog / "img" / "a2.jpg").write_bytes(jpeg_bytes(640, 480))
    write_csv(
        catalog / "cars.csv",
        [
            ["1", "Alpha", "First car", "img/a2.jpg"],  # new image
            ["2", "Beta v2", "Second car", "img/b.png"],  # new title, same image
            ["3", "Gamma", "Third car", "img/c.jpg"],
            ["4", "Delta", "No image", ""],
        ],
    )

    out, _ = import_csv(str(catalog / "cars.csv"))

    assert summary(out) == (
        "created 0, updated 2, unchanged 2, deleted 0, rejected 0 rows; images: 1 ok, 0 failed"
    )
    alpha.refresh_from_db()
    assert_picture_files(alpha, sha256_of(catalog / "img" / "a2.jpg"), ".jpg")
    assert alpha.renditions["web"]["width"] == 640  # the new picture, not upscaled
    files = media_files(Path(settings.MEDIA_ROOT))
    assert files_of(alpha) <= files
    assert not old_files & files, "no car shows the replaced picture: its files are deleted"
    assert not Picture.objects.filter(pk=old_picture).exists()
    assert Car.objects.get(external_key="2").title == "Beta v2"


@pytest.mark.django_db(transaction=True)
def test_a_replaced_or_removed_image_keeps_its_files_while_another_car_shows_them(
    catalog, settings
):
    """The same bytes under another path are one picture; it goes with the last car."""
    (catalog / "img" / "copy-of-a.jpg").write_bytes((catalog / "img" / "a.jpg").read_bytes())
    (catalog / "img" / "a2.jpg").write_bytes(jpeg_bytes(640, 480))
    rows = [["1", "Alpha", "", "img/a.jpg"], ["5", "Echo", "", "img/copy-of-a.jpg"]]
    write_csv(catalog / "cars.csv", rows)
    _, err = import_csv(str(catalog / "cars.csv"))
    alpha, echo = Car.objects.get(external_key="1"), Car.objects.get(external_key="5")
    assert "pictures: 1 new, 1 shared" in err
    assert alpha.picture_id == echo.picture_id
    shared = files_of(alpha)
    media = Path(settings.MEDIA_ROOT)
    assert media_files(media) == shared

    write_csv(catalog / "cars.csv", [["1", "Alpha", "", "img/a2.jpg"], rows[1]])
    import_csv(str(catalog / "cars.csv"))
    assert shared <= media_files(media), "Echo still shows them"
    assert Car.objects.get(external_key="5").picture_id == echo.picture_id

    write_csv(catalog / "cars.csv", [["1", "Alpha", "", "img/a2.jpg"], ["5", "Echo", "", ""]])
    import_csv(str(catalog / "cars.csv"))
    assert not shared & media_files(media), "the last car showing them let them go"
    assert not Picture.objects.filter(pk=echo.picture_id).exists()
    assert media_files(media) == files_of(Car.objects.get(external_key="1"))


@pytest.mark.django_db(transaction=True)
def test_removing_an_image_reference_deletes_the_stored_files(catalog, settings):
    import_csv(str(catalog / "cars.csv"))
    gamma = Car.objects.get(external_key="3")
    picture, owned = gamma.picture_id, files_of(gamma)
    kept = media_files(Path(settings.MEDIA_ROOT)) - owned
    write_csv(
        catalog / "cars.csv",
        [
            ["1", "Alpha", "First car", "img/a.jpg"],
            ["2", "Beta", "Second car", "img/b.png"],
            ["3", "Gamma", "Third car", ""],
            ["4", "Delta", "No image", ""],
        ],
    )
    out, _ = import_csv(str(catalog / "cars.csv"))

    assert "updated 1" in summary(out)
    gamma.refresh_from_db()
    assert not gamma.image and gamma.renditions == {} and gamma.image_status == ImageStatus.NONE
    assert gamma.picture is None and not Picture.objects.filter(pk=picture).exists()
    assert media_files(Path(settings.MEDIA_ROOT)) == kept, "only Gamma's files are deleted"


def test_rejected_rows_are_reported_with_line_numbers_and_the_rest_imports(tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text(
        "id,title,description,image\n"
        '1,Good,"two\nlines",\n'  # lines 2-3
        "2,,no title,\n"  # line 4
        f"3,{'x' * 256},too long,\n"  # line 5
        "1,Again,duplicate id,\n"  # line 6
        "4,Too,many,fields,here\n"  # line 7
        "5,Fine,last,\n",  # line 8
        encoding="utf-8",
    )
    report_file = tmp_path / "report.json"

    out, err = import_csv(str(source), "--report", str(report_file))

    assert summary(out) == (
        "created 2, updated 0, unchanged 0, deleted 0, rejected 4 rows; images: 0 ok, 0 failed"
    )
    report = json.loads(report_file.read_text())
    assert [(r["line"], r["reason"]) for r in report["rejected_rows"]] == [
        (4, "missing_title"),
        (5, "title_too_long"),
        (6, "duplicate_key"),
        (7, "field_count"),
    ]
    assert "line 6: rejected (duplicate_key)" in err
    assert sorted(Car.objects.values_list("external_key", flat=True)) == ["1", "5"]
    assert Car.objects.get(external_key="1").title == "Good"  # the first one is kept


def test_report_file_has_the_documented_shape(catalog, tmp_path):
    write_csv(
        catalog / "cars.csv",
        [["1", "Alpha", "", "img/a.jpg"], ["2", "Broken", "", "img/missing.jpg"], ["", "", "", ""]],
    )
    report_file = tmp_path / "r.json"
    import_csv(str(catalog / "cars.csv"), "--report", str(report_file))

    report = json.loads(report_file.read_text())
    assert report["source"] == str(catalog / "cars.csv")
    assert report["counts"] == {
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "rejected": 0,
        "images_ok": 1,
        "images_failed": 1,
    }
    assert report["rejected_rows"] == []
    assert report["image_failures"] == [
        {
            "line": 3,
            "key": "2",
            "url": "img/missing.jpg",
            "reason": "unreachable",
            "message": report["image_failures"][0]["message"],
        }
    ]
    assert "missing.jpg" in report["image_failures"][0]["message"]
    assert set(report["timings"]) == {"rows", "images", "fetch", "writes", "images_cpu"}
    assert all(seconds >= 0 for seconds in report["timings"].values())


def test_other_columns_are_kept_as_attributes_and_the_mapping_is_said(tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text("Title,Colour,IMAGE_URL,Price\nA,red,,10\nB,blue,,20\n", encoding="utf-8")
    _, err = import_csv(str(source))
    assert "encoding: utf-8" in err
    assert "mapping: title <- Title" in err and "mapping: image <- IMAGE_URL" in err
    assert err.count("mapping: attributes <- 2 other columns") == 1
    assert dict(Car.objects.values_list("title", "attributes")) == {
        "A": {"Colour": "red", "Price": "10"},
        "B": {"Colour": "blue", "Price": "20"},
    }


def test_cars_without_an_id_column_are_keyed_by_content_and_not_duplicated(tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text("title;description\nA;one\nB;two\n", encoding="utf-8")
    import_csv(str(source))
    out, _ = import_csv(str(source))
    assert "created 0, updated 0, unchanged 2" in summary(out)
    assert Car.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_prune_deletes_cars_missing_from_the_source_with_their_files(catalog, settings):
    import_csv(str(catalog / "cars.csv"))
    alpha = Car.objects.get(external_key="1")
    beta = Car.objects.get(external_key="2")
    owned = files_of(beta)
    write_csv(catalog / "cars.csv", [["1", "Alpha", "First car", "img/a.jpg"]])

    out, _ = import_csv(str(catalog / "cars.csv"))
    assert Car.objects.count() == 4, "without --prune nothing is deleted"
    out, _ = import_csv(str(catalog / "cars.csv"), "--prune")

    assert "deleted 3" in summary(out)
    assert list(Car.objects.values_list("external_key", flat=True)) == ["1"]
    assert not owned & media_files(Path(settings.MEDIA_ROOT))
    assert media_files(Path(settings.MEDIA_ROOT)) == files_of(alpha), "Alpha's files stay"
    assert list(Picture.objects.values_list("pk", flat=True)) == [alpha.picture_id]


@pytest.mark.django_db(transaction=True)
def test_prune_keeps_the_files_of_a_picture_a_remaining_car_shows(catalog, settings):
    (catalog / "img" / "copy-of-b.png").write_bytes((catalog / "img" / "b.png").read_bytes())
    rows = [["2", "Beta", "", "img/b.png"], ["5", "Echo", "", "img/copy-of-b.png"]]
    write_csv(catalog / "cars.csv", rows)
    import_csv(str(catalog / "cars.csv"))
    echo = Car.objects.get(external_key="5")
    shared = files_of(echo)

    write_csv(catalog / "cars.csv", rows[1:])
    out, _ = import_csv(str(catalog / "cars.csv"), "--prune")

    assert "deleted 1" in summary(out)
    assert media_files(Path(settings.MEDIA_ROOT)) == shared, "Echo still shows Beta's picture"
    assert list(Picture.objects.values_list("pk", flat=True)) == [echo.picture_id]

    write_csv(catalog / "cars.csv", [["6", "Foxtrot", "", ""]])
    out, _ = import_csv(str(catalog / "cars.csv"), "--prune")
    assert "deleted 1" in summary(out)
    assert media_files(Path(settings.MEDIA_ROOT)) == set()
    assert not Picture.objects.exists()


def test_dry_run_reports_what_would_happen_and_changes_nothing(catalog, settings):
    out, _ = import_csv(str(catalog / "cars.csv"), "--dry-run")

    assert summary(out) == (
        "created 4, updated 0, unchanged 0, deleted 0, rejected 0 rows; images: 3 ok, 0 failed"
    )
    assert Car.objects.count() == 0
    assert media_files(Path(settings.MEDIA_ROOT)) == set()


def test_dry_run_with_prune_counts_deletions_without_deleting(catalog):
    import_csv(str(catalog / "cars.csv"))
    write_csv(catalog / "cars.csv", [["1", "Alpha", "First car", "img/a.jpg"]])
    out, _ = import_csv(str(catalog / "cars.csv"), "--prune", "--dry-run")
    assert "deleted 3" in summary(out)
    assert Car.objects.count() == 4


# --- images over HTTP -------------------------------------------------------------------


def test_images_over_http_are_fetched_once_per_url_and_not_again_on_reimport(
    http_server, tmp_path, settings
):
    a, b = photo_like(1200, 900), png_bytes(100, 80)
    http_server.add("/a.jpg", a, headers={"Content-Type": "image/jpeg"})
    http_server.add("/b", b, headers={"Content-Type": "text/plain"})
    rows = [
        ["1", "One", "", http_server.url("/a.jpg")],
        ["2", "Two", "", http_server.url("/a.jpg")],  # same URL: fetched once
        ["3", "Three", "", http_server.url("/b")],  # a PNG labelled text/plain
    ]
    source = write_csv(tmp_path / "cars.csv", rows)

    out, err = import_csv(str(source))
    assert summary(out).endswith("images: 3 ok, 0 failed")
    assert "pictures: 2 new, 1 shared" in err
    assert http_server.hits["/a.jpg"] == 1
    assert http_server.hits["/b"] == 1
    one, two = Car.objects.get(external_key="1"), Car.objects.get(external_key="2")
    assert one.picture_id == two.picture_id, "the same bytes are one picture"
    assert_picture_files(one, hashlib.sha256(a).hexdigest(), ".jpg")
    three = Car.objects.get(external_key="3")
    assert_picture_files(three, hashlib.sha256(b).hexdigest(), ".png")
    files = media_files(Path(settings.MEDIA_ROOT))
    assert files == files_of(one) | files_of(three), "each picture stored and rendered once"

    out, err = import_csv(str(source))
    assert summary(out).endswith("images: 0 ok, 0 failed")
    assert "pictures:" not in err
    assert http_server.hits["/a.jpg"] == 1, "an unchanged URL is not fetched again"

    out, err = import_csv(str(source), "--refresh-images")
    assert summary(out).endswith("images: 3 ok, 0 failed")
    assert "pictures: 0 new, 3 shared" in err, "the same bytes again: nothing stored anew"
    assert http_server.hits["/a.jpg"] == 2
    assert media_files(Path(settings.MEDIA_ROOT)) == files
    assert Car.objects.get(external_key="1").picture_id == one.picture_id


def test_a_csv_served_over_http_imports_with_absolute_image_urls(http_server):
    http_server.add("/img.jpg", jpeg_bytes(400, 300))
    body = f"title,image\nRemote,{http_server.url('/img.jpg')}\nLocal,img.jpg\n".encode()
    http_server.add("/cars.csv", body, headers={"Content-Type": "text/csv"})

    out, _ = import_csv(http_server.url("/cars.csv"))

    assert summary(out).endswith("images: 1 ok, 1 failed")
    local = Car.objects.get(title="Local")
    assert local.image_error == "blocked_path", "a remote CSV may not name local files"
    assert Car.objects.get(title="Remote").image_status == ImageStatus.READY


@pytest.mark.parametrize(
    ("route", "reason"),
    [
        ({"body": b"<html>not an image</html>"}, "invalid_image"),
        ({"body": b"<svg xmlns='http://www.w3.org/2000/svg'/>"}, "invalid_image"),
        ({"status": 404}, "http_error"),
        ({"status": 503, "body": b"down"}, "http_error"),
        ({"redirect_to": "/loop"}, "too_many_redirects"),
    ],
)
def test_each_failed_image_is_recorded_with_its_reason_and_the_car_kept(
    http_server, tmp_path, route, reason
):
    http_server.add("/loop", **route)
    http_server.add("/ok.jpg", jpeg_bytes(64, 48))
    source = write_csv(
        tmp_path / "cars.csv",
        [["1", "Bad", "", http_server.url("/loop")], ["2", "Good", "", http_server.url("/ok.jpg")]],
    )

    out, err = import_csv(str(source))

    assert summary(out).endswith("images: 1 ok, 1 failed")
    bad = Car.objects.get(external_key="1")
    assert bad.image_status == ImageStatus.FAILED
    assert bad.image_error == reason
    assert not bad.image and bad.renditions == {}
    assert f"line 2: image failed ({reason})" in err
    assert Car.objects.get(external_key="2").image_status == ImageStatus.READY


def test_image_limits_refuse_large_and_huge_images(http_server, tmp_path, settings):
    from tests.support.images import bomb_png

    settings.CARS_IMAGE_MAX_BYTES = 50_000
    settings.CARS_IMAGE_MAX_PIXELS = 1_000_000
    http_server.add("/big.jpg", photo_like(2000, 1500, quality=95))
    http_server.add("/bomb.png", bomb_png(20000, 20000))
    source = write_csv(
        tmp_path / "cars.csv",
        [
            ["1", "Big", "", http_server.url("/big.jpg")],
            ["2", "Bomb", "", http_server.url("/bomb.png")],
        ],
    )
    import_csv(str(source))
    assert Car.objects.get(external_key="1").image_error == "too_large"
    assert Car.objects.get(external_key="2").image_error == "too_many_pixels"


def test_a_failed_image_is_retried_by_the_next_import(http_server, tmp_path):
    http_server.add("/flaky.jpg", status=404)
    source = write_csv(tmp_path / "cars.csv", [["1", "Flaky", "", http_server.url("/flaky.jpg")]])
    import_csv(str(source))
    assert Car.objects.get().image_error == "http_error"

    http_server.add("/flaky.jpg", jpeg_bytes(50, 50))
    out, _ = import_csv(str(source))

    assert summary(out).endswith("images: 1 ok, 0 failed")
    car = Car.objects.get()
    assert car.image_status == ImageStatus.READY and car.image_error is None


def test_transient_server_errors_are_retried_within_one_import(http_server, tmp_path):
    http_server.add("/busy.jpg", jpeg_bytes(50, 50), fail_times=2, fail_status=503)
    source = write_csv(tmp_path / "cars.csv", [["1", "Busy", "", http_server.url("/busy.jpg")]])
    out, _ = import_csv(str(source))
    assert summary(out).endswith("images: 1 ok, 0 failed")
    assert http_server.hits["/busy.jpg"] == 3


def test_private_addresses_are_refused_when_not_allowed(http_server, tmp_path, settings):
    settings.CARS_ALLOW_PRIVATE_URLS = False
    http_server.add("/a.jpg", jpeg_bytes(50, 50))
    source = write_csv(tmp_path / "cars.csv", [["1", "Private", "", http_server.url("/a.jpg")]])
    import_csv(str(source))
    assert Car.objects.get().image_error == "blocked_address"
    assert http_server.hits["/a.jpg"] == 0


def test_local_paths_may_not_escape_the_csv_folder(catalog, tmp_path):
    (tmp_path / "secret.jpg").write_bytes(jpeg_bytes(10, 10))
    (catalog / "img" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    write_csv(
        catalog / "cars.csv",
        [
            ["1", "Dots", "", "../secret.jpg"],
            ["2", "Absolute", "", str(tmp_path / "secret.jpg")],
            ["3", "Symlink", "", "img/link.jpg"],
            ["4", "Scheme", "", "file:///etc/passwd"],
        ],
    )
    import_csv(str(catalog / "cars.csv"))
    errors = dict(Car.objects.values_list("external_key", "image_error"))
    assert errors == {
        "1": "blocked_path",
        "2": "blocked_path",
        "3": "blocked_path",
        "4": "unsupported_scheme",
    }


# --- renditions of awkward inputs ---------------------------------------------------------


def test_renditions_apply_exif_rotation_and_convert_every_mode(tmp_path, settings):
    from tests.support.images import gif_bytes

    folder = tmp_path
    (folder / "rotated.jpg").write_bytes(jpeg_bytes(400, 200, exif_orientation=6))
    (folder / "cmyk.jpg").write_bytes(jpeg_bytes(300, 200, cmyk=True))
    (folder / "palette.png").write_bytes(png_bytes(300, 200, mode="P", transparent=True))
    (folder / "deep.png").write_bytes(png_bytes(300, 200, mode="I;16"))
    (folder / "anim.gif").write_bytes(gif_bytes(120, 90, frames=3))
    names = ["rotated.jpg", "cmyk.jpg", "palette.png", "deep.png", "anim.gif"]
    write_csv(folder / "cars.csv", [[str(i), n, "", n] for i, n in enumerate(names)])

    out, _ = import_csv(str(folder / "cars.csv"))

    assert summary(out).endswith("images: 5 ok, 0 failed")
    media = Path(settings.MEDIA_ROOT)
    sizes = {}
    for car in Car.objects.all():
        with Image.open(media / car.renditions["web"]["name"]) as img:
            assert img.mode == "RGB"
            sizes[car.title] = img.size
    with Image.open(folder / "rotated.jpg") as stored:
        assert stored.size == (200, 400), "pixels stored sideways, EXIF says turn them"
    assert sizes["rotated.jpg"] == (400, 200), "the rendition is upright"
    assert sizes["anim.gif"] == (120, 90)


# --- fatal source errors ------------------------------------------------------------------


@pytest.fixture
def existing_car(catalog):
    import_csv(str(catalog / "cars.csv"))
    return {c.pk: (c.title, c.updated_at, c.image.name) for c in Car.objects.all()}


def _assert_unchanged(existing, settings, files):
    assert {c.pk: (c.title, c.updated_at, c.image.name) for c in Car.objects.all()} == existing
    assert media_files(Path(settings.MEDIA_ROOT)) == files


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\xef\xbb\xbf", "empty"),
        (b"marke,image\nA,x\n", "no 'title' column"),
        (b"title\n\xff\xfe bad bytes\n", "UTF-8"),
    ],
)
def test_fatal_csv_errors_exit_1_and_leave_the_database_unchanged(
    existing_car, tmp_path, settings, content, message
):
    files = media_files(Path(settings.MEDIA_ROOT))
    source = tmp_path / "bad.csv"
    source.write_bytes(content)
    # Bytes that are no UTF-8 are read in the encoding they are in, unless one is declared.
    declared = ["--encoding", "utf-8"] if message == "UTF-8" else []

    with pytest.raises(CommandError) as excinfo:
        import_csv(str(source), "--prune", *declared)

    assert excinfo.value.returncode == 1
    assert message in str(excinfo.value)
    _assert_unchanged(existing_car, settings, files)


def test_invalid_utf8_after_many_rows_rolls_back_every_batch(existing_car, tmp_path, settings):
    files = media_files(Path(settings.MEDIA_ROOT))
    rows = "".join(f"{i},Car {i},,\n" for i in range(100, 3100))  # several write batches
    source = tmp_path / "late.csv"
    source.write_bytes(
        b"id,title,description,image\n1,Renamed,," + b"\n" + rows.encode() + b"\xff\n"
    )

    with pytest.raises(CommandError) as excinfo:
        import_csv(str(source), "--encoding", "utf-8")

    assert excinfo.value.returncode == 1
    assert "line 3003" in str(excinfo.value)  # header 1, rows 2-3002
    _assert_unchanged(existing_car, settings, files)


def car_indexes() -> dict:
    """Every index and constraint of the cars table, as the database describes them."""
    with connection.cursor() as cursor:
        return connection.introspection.get_constraints(cursor, Car._meta.db_table)


def test_a_first_import_failing_late_leaves_the_catalogue_empty_with_its_indexes(tmp_path):
    # Into an empty catalogue the writer builds the car indexes once, after the rows.
    indexes = car_indexes()
    rows = "".join(f"{i},Car {i},,\n" for i in range(1, 3001))  # several write batches
    source = tmp_path / "late.csv"
    source.write_bytes(b"id,title,description,image\n" + rows.encode() + b"\xff\n")

    with pytest.raises(CommandError) as excinfo:
        import_csv(str(source), "--encoding", "utf-8")

    assert "line 3002" in str(excinfo.value)
    assert not Car.objects.exists()
    assert car_indexes() == indexes


def test_a_first_import_leaves_every_car_index_as_the_migrations_made_it(tmp_path):
    indexes = car_indexes()
    source = tmp_path / "cars.csv"
    write_csv(source, [[str(i), f"Car {i}", "", ""] for i in range(1, 3001)])

    out, _ = import_csv(str(source))

    assert summary(out).startswith("created 3000,")
    assert car_indexes() == indexes
    assert Car.objects.get(external_key="2999").title == "Car 2999"


def test_missing_unreachable_and_oversized_sources_are_fatal(
    existing_car, http_server, tmp_path, settings
):
    files = media_files(Path(settings.MEDIA_ROOT))
    http_server.add("/gone.csv", status=404)
    http_server.add("/big.csv", b"title\n" + b"x\n" * 600)
    settings.CARS_CSV_MAX_BYTES = 1000
    (tmp_path / "big.csv").write_bytes(b"title\n" + b"x\n" * 600)

    for source, message in [
        (str(tmp_path / "nope.csv"), "no such file"),
        (http_server.url("/gone.csv"), "http_error"),
        ("http://127.0.0.1:9/cars.csv", "unreachable"),
        (http_server.url("/big.csv"), "too_large"),
        (str(tmp_path / "big.csv"), "CARS_CSV_MAX_BYTES"),
        ("ftp://example.com/cars.csv", "unsupported source"),
    ]:
        with pytest.raises(CommandError) as excinfo:
            import_csv(source)
        assert excinfo.value.returncode == 1, source
        assert message in str(excinfo.value), (source, str(excinfo.value))
    _assert_unchanged(existing_car, settings, files)


def test_the_service_raises_a_domain_error_for_fatal_sources(tmp_path):
    with pytest.raises(SourceError):
        run_import(source=str(tmp_path / "absent.csv"))


def test_bad_usage_exits_2():
    with pytest.raises(CommandError) as excinfo:
        import_csv("--workers", "0")
    assert excinfo.value.returncode == 2


def test_the_bundled_sample_imports_with_its_deliberate_failures(settings):
    out, err = import_csv()  # default source: CARS_CSV_SOURCE, the bundled sample

    assert summary(out) == (
        "created 25, updated 0, unchanged 0, deleted 0, rejected 3 rows; images: 20 ok, 4 failed"
    )
    reasons = dict(Car.objects.exclude(image_error=None).values_list("title", "image_error"))
    assert reasons == {
        "Text Pretending": "invalid_image",
        "Missing File": "unreachable",
        "Escaping Path": "blocked_path",
        "FTP Image": "unsupported_scheme",
    }
    assert "mapping: attributes <- 1 other columns" in err
    assert Car.objects.exclude(attributes={}).values_list("attributes", flat=True)[0].keys() == {
        "colour"
    }


def test_concurrent_rendering_leaves_the_process_stderr_alone(catalog, monkeypatch):
    """pilkit's quiet() used to swap fd 2 per save; threads racing left it at /dev/null.

    Rendering runs in threads where processes are not allowed (Celery's prefork children).
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    import imports.pictures.pipeline

    monkeypatch.setattr(imports.pictures.pipeline, "render_pool", lambda: ThreadPoolExecutor(8))

    for i in range(12):
        (catalog / "img" / f"n{i}.jpg").write_bytes(jpeg_bytes(300 + i, 200))
    write_csv(catalog / "cars.csv", [[str(i), f"Car {i}", "", f"img/n{i}.jpg"] for i in range(12)])
    before = os.fstat(2)

    run_import(source=str(catalog / "cars.csv"), workers=8)

    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def _render_that_kills_its_process(sha256, data):
    """A render process dying mid-image (as when the kernel kills it for memory)."""
    import imports.pictures.pipeline

    if data.startswith(b"\x89PNG"):  # img/b.png, Beta's: the catalogue's only PNG
        os._exit(1)
    return imports.pictures.pipeline._real_check_and_render(sha256, data)


def test_a_render_process_that_dies_fails_images_not_the_import(catalog, monkeypatch):
    import imports.pictures.pipeline

    real = imports.pictures.pipeline.check_and_render
    monkeypatch.setattr(imports.pictures.pipeline, "_real_check_and_render", real, raising=False)
    monkeypatch.setattr(
        imports.pictures.pipeline, "check_and_render", _render_that_kills_its_process
    )

    out, _ = import_csv(str(catalog / "cars.csv"))

    assert summary(out).startswith("created 4,")
    beta = Car.objects.get(external_key="2")
    assert beta.image_status == ImageStatus.FAILED and beta.image_error == "invalid_image"
    assert "rendering crashed" in beta.image_error_message
    assert "TypeError" not in beta.image_error_message  # the process died; no bad call
    monkeypatch.undo()
    out, _ = import_csv(str(catalog / "cars.csv"))
    assert Car.objects.filter(image_status=ImageStatus.READY).count() == 3, (
        "the next import retries"
    )


@pytest.mark.django_db(transaction=True)
def test_a_bad_image_is_still_the_reason_when_its_old_files_cannot_be_deleted(
    catalog, monkeypatch, settings
):
    """The car's previous picture is released after commit; a storage that cannot delete
    it then neither hides the new image's reason nor fails the import. The picture's row
    goes (no car may share a picture whose files may be gone); the files the storage
    kept have no row, and the same bytes imported again are stored whole and shown."""
    from django.core.files.storage import FileSystemStorage

    import_csv(str(catalog / "cars.csv"))
    alpha = Car.objects.get(external_key="1")
    old_picture, old_files = alpha.picture_id, files_of(alpha)
    (catalog / "img" / "bad.jpg").write_bytes(b"not an image at all")
    write_csv(catalog / "cars.csv", [["1", "Alpha", "First car", "img/bad.jpg"]])
    deletes: list[str] = []

    def storage_down(self, name):
        deletes.append(name)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(FileSystemStorage, "delete", storage_down)
    out, err = import_csv(str(catalog / "cars.csv"))

    assert summary(out).endswith("images: 0 ok, 1 failed")
    assert "line 2: image failed (invalid_image)" in err
    alpha.refresh_from_db()
    assert (alpha.image_status, alpha.image_error) == (ImageStatus.FAILED, "invalid_image")
    assert alpha.picture is None
    assert sorted(deletes) == sorted(old_files), "the released picture's files were asked to go"
    assert not Picture.objects.filter(pk=old_picture).exists(), "no row without its files"
    assert old_files <= media_files(Path(settings.MEDIA_ROOT)), "what the storage kept"

    monkeypatch.undo()  # the storage is back; the same bytes come again
    write_csv(catalog / "cars.csv", [["1", "Alpha", "First car", "img/a.jpg"]])
    out, _ = import_csv(str(catalog / "cars.csv"))
    assert summary(out).endswith("images: 1 ok, 0 failed")
    alpha.refresh_from_db()
    assert alpha.image_status == ImageStatus.READY and files_of(alpha) == old_files
    media = Path(settings.MEDIA_ROOT)
    assert all((media / name).read_bytes() for name in files_of(alpha))


def test_render_processes_run_below_the_fetch_threads_priority():
    """README: rendering takes the CPU the downloads leave (render processes at nice 10)."""
    from concurrent.futures import ProcessPoolExecutor

    import imports.pictures.pipeline

    with imports.pictures.pipeline.render_pool() as pool:
        if not isinstance(pool, ProcessPoolExecutor):
            pytest.skip("one core: rendering runs on threads of this process")
        child = pool.submit(os.nice, 0).result()
    assert child == min(19, os.nice(0) + imports.pictures.pipeline.RENDER_NICENESS)


@pytest.mark.django_db
def test_the_row_phase_never_writes_back_image_state_it_read_before_another_writer(
    catalog, monkeypatch
):
    """Between the row phase's read of a car and its write, a chunk of another import (or
    a retry, or migrate_pictures) gives the car another picture: the row phase's update
    of the text must leave that picture alone, not restore the one it read."""
    import cars.services

    import_csv(str(catalog / "cars.csv"))
    alpha, beta = Car.objects.get(external_key="1"), Car.objects.get(external_key="2")
    real_existing = cars.services._existing

    def read_then_another_writer(batch):
        seen = real_existing(batch)
        Car.objects.filter(pk=alpha.pk).update(picture_id=beta.picture_id)
        return seen

    monkeypatch.setattr(cars.services, "_existing", read_then_another_writer)
    write_csv(
        catalog / "cars.csv",
        [
            ["1", "Alpha renamed", "First car", "img/a.jpg"],
            ["2", "Beta", "Second car", "img/b.png"],
            ["3", "Gamma", "Third car", "img/c.jpg"],
            ["4", "Delta", "No image", ""],
        ],
    )
    out, _ = import_csv(str(catalog / "cars.csv"))

    assert summary(out).startswith("created 0, updated 1, unchanged 3")
    alpha.refresh_from_db()
    assert alpha.title == "Alpha renamed"
    assert alpha.picture_id == beta.picture_id, "the other writer's picture was overwritten"

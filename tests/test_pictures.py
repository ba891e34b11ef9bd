"""Pictures by content (issue #12, SPEC §5) end to end.

A picture is stored once per distinct content and rendered once per platform, whatever
URLs and however many cars show it; its files go with the last car that shows it, on
local storage and on S3 (the moto server); a re-import of the same bytes under new URLs
writes nothing; two imports at once never delete what the other needs; a deployment on
the old per-car layout moves to it with `migrate_pictures` while it keeps serving.

Real CSVs, images served by the local HTTP server, the real importer and API, real
files counted under MEDIA_ROOT or in the bucket; `manage.py` subprocesses on a scratch
database of the suite's own kind (SQLite, or PostgreSQL when the suite runs on it).
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from django.core.management import call_command

from cars.models import Car, ImageStatus, Picture
from imports.models import ImportJob
from imports.services import run_import
from tests.support.catalog import small_catalog, write_csv
from tests.support.httpserver import LocalHTTPServer
from tests.support.images import photo_like
from tests.support.pictures import (
    IMMUTABLE,
    LEGACY_NAME,
    PLATFORMS,
    LocalMedia,
    StorageWrites,
    count_renders,
    hold,
    make_bucket,
    manage_in,
    old_checkout,
    picture_bytes,
    runserver,
    s3_storages,
    scratch_database,
    start_manage,
    wait_for,
)
from tests.support.project import ROOT, project_env

JPEG = {"Content-Type": "image/jpeg"}


# --------------------------------------------------------------------------- helpers


def serve(server: LocalHTTPServer, path: str, data: bytes, query: str = "") -> str:
    """Serve `data` at `path`; return its URL (a query string routes to the same path)."""
    server.add(path, data, headers=JPEG)
    return server.url(path) + (f"?{query}" if query else "")


def import_csv(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_csv", *args, "--no-progress", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def shown_names(car: Car) -> set[str]:
    """The files a car shows: its picture's original and renditions."""
    return set(car.picture.stored_names()) if car.picture_id else set()


def picture_names(sha256: str) -> set[str]:
    return set(Picture.objects.get(sha256=sha256).stored_names())


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def media_name(url: str, media_url: str) -> str:
    """The stored name an API URL serves (local media: `<host><MEDIA_URL><name>`)."""
    path = urlsplit(url).path
    assert path.startswith(media_url), url
    return path[len(media_url) :]


def assert_storage_holds_what_cars_show(media) -> None:
    """Every file a car shows is stored, and nothing else is: no orphan file or row."""
    shown: set[str] = set()
    for car in Car.objects.select_related("picture").exclude(picture=None):
        shown |= shown_names(car)
    assert not Picture.objects.filter(cars=None).exists(), "a picture no car shows is kept"
    stored = media.names()
    assert not shown - stored, f"files cars show are missing: {sorted(shown - stored)}"
    assert not stored - shown, f"files no car shows are kept: {sorted(stored - shown)}"


# --------------------------------------------------------------------------- storages


@pytest.fixture(scope="module")
def s3_server():
    """One moto S3 server for this module (each test gets a bucket of its own)."""
    pytest.importorskip("moto", reason="moto[server] is not installed: S3 needs its server")
    from tests.support.s3 import MotoServer

    with MotoServer() as server:
        yield server


@pytest.fixture(params=["local", "s3"])
def media(request, settings):
    """The default storage: MEDIA_ROOT, or a bucket of the moto S3 server."""
    if request.param == "local":
        return LocalMedia(Path(settings.MEDIA_ROOT))
    bucket = make_bucket(request.getfixturevalue("s3_server"))
    settings.STORAGES = s3_storages(settings.STORAGES, bucket)
    return bucket


def assert_served_for_good(media, client, name: str) -> None:
    """The file is served (200, its bytes) with the immutable Cache-Control."""
    if media.kind == "local":
        response = client.get(f"/media/{name}")
        assert response.status_code == 200, name
        assert b"".join(response.streaming_content) == media.read(name)
        assert response["Cache-Control"] == IMMUTABLE
        return
    fetched = httpx.get(f"{media.endpoint}/{name}", timeout=10, trust_env=False)
    assert fetched.status_code == 200, (name, fetched.text[:200])
    assert fetched.content == media.read(name)
    assert media.head(name)["CacheControl"] == IMMUTABLE


# --------------------------------------------------------------------------- 1,000 rows


@pytest.mark.django_db
def test_a_thousand_rows_over_twenty_pictures_store_and_render_each_picture_once(
    http_server, tmp_path, settings, client, admin_client
):
    pictures = [picture_bytes(n) for n in range(20)]
    refs: dict[str, set[str]] = {}  # path -> distinct URLs naming it
    rows = []
    for j in range(1000):
        n, turn = j % 20, j // 20
        # Every picture under rotating signatures; every 4th also under a mirror path.
        path = f"/mirror/{n}.jpg" if n % 4 == 0 and turn % 2 else f"/pictures/{n}.jpg"
        url = serve(http_server, path, pictures[n], query=f"sig={turn % 10}")
        refs.setdefault(path, set()).add(url)
        rows.append([str(j), f"Car {j}", f"Picture {n}", url])
    write_csv(tmp_path / "cars.csv", rows)

    out, err = import_csv(str(tmp_path / "cars.csv"), "--report", str(tmp_path / "report.json"))

    assert out.strip().splitlines()[-1] == (
        "created 1000, updated 0, unchanged 0, deleted 0, rejected 0 rows; "
        "images: 1000 ok, 0 failed"
    )
    assert "pictures: 20 new, 980 shared" in err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["pictures"] == {"new": 20, "shared": 980}
    job = ImportJob.objects.get()
    assert job.pictures == {"new": 20, "shared": 980}
    assert admin_client.get(f"/api/imports/{job.pk}/").json()["pictures"] == job.pictures
    # Each distinct URL was fetched once (200 of them), whatever rows name it.
    assert dict(http_server.hits) == {path: len(urls) for path, urls in refs.items()}

    # 20 originals, named by their content, and 3 renditions each: nothing else on disk.
    files = LocalMedia(Path(settings.MEDIA_ROOT)).names()
    originals = {name for name in files if name.startswith("images/")}
    assert originals == {f"images/{sha(data)}.jpg" for data in pictures}
    assert len(files - originals) == 60
    assert all(name.startswith("CACHE/images/") for name in files - originals)
    assert Picture.objects.count() == 20
    assert set(Car.objects.values_list("image_status", flat=True)) == {ImageStatus.READY}

    # Every car shows its picture, with the one URL that picture has on every car.
    ids = dict(Car.objects.values_list("external_key", "pk"))
    by_platform: dict[str, dict[int, set[str]]] = {}
    for platform in PLATFORMS:
        listed = client.get(f"/api/cars/{platform}/?limit=1000").json()
        assert len(listed) == 1000
        urls = by_platform[platform] = {}
        for row in listed:
            assert row["image"], row
            urls.setdefault(int(row["description"].split()[-1]), set()).add(row["image"])
        assert all(len(seen) == 1 for seen in urls.values()), urls
        assert len({url for seen in urls.values() for url in seen}) == 20
        assert {media_name(url, settings.MEDIA_URL) for (url,) in urls.values()} <= files
    for j in range(0, 1000, 7):  # 143 cars: every picture, under many of its URLs
        detail = client.get(f"/api/cars/{ids[str(j)]}/").json()
        assert set(detail["images"]) == set(PLATFORMS)
        for platform, entry in detail["images"].items():
            assert {entry["url"]} == by_platform[platform][j % 20], (j, platform)
            assert media_name(entry["url"], settings.MEDIA_URL) in files


# --------------------------------------------------------------------------- deleting


@pytest.mark.django_db(transaction=True)
def test_pruning_to_one_car_keeps_its_files_and_they_still_serve(
    http_server, tmp_path, client, settings
):
    media = LocalMedia(Path(settings.MEDIA_ROOT))
    shared, other = picture_bytes(0), picture_bytes(1)
    rows = [
        [str(k), f"Car {k}", "", serve(http_server, f"/{k}/car.jpg", shared, query=f"sig={k}")]
        for k in range(1, 5)
    ]
    rows.append(["5", "Car 5", "", serve(http_server, "/5/car.jpg", other)])
    write_csv(tmp_path / "cars.csv", rows)
    report = run_import(source=str(tmp_path / "cars.csv"), workers=4)
    assert (report.pictures.new, report.pictures.shared) == (2, 3), report.as_dict()
    assert len(media.names()) == 8

    write_csv(tmp_path / "cars.csv", [rows[1]])
    report = run_import(source=str(tmp_path / "cars.csv"), prune=True, workers=4)

    assert report.counts.deleted == 4, report.summary()
    kept = Car.objects.select_related("picture").get()
    assert kept.external_key == "2" and kept.picture.sha256 == sha(shared)
    assert media.names() == shown_names(kept) == picture_names(sha(shared))
    assert not Picture.objects.filter(sha256=sha(other)).exists()
    detail = client.get(f"/api/cars/{kept.pk}/").json()
    for entry in detail["images"].values():
        assert_served_for_good(media, client, media_name(entry["url"], "/media/"))
    assert_served_for_good(media, client, kept.picture.image.name)


@pytest.mark.django_db(transaction=True)
def test_deleting_cars_with_the_admin_action_deletes_the_files_no_car_shows(
    http_server, tmp_path, admin_client, settings
):
    """The admin's bulk "Delete selected cars" runs outside a transaction of the admin's
    own: the pictures still go once the cars that showed them are gone."""
    media = LocalMedia(Path(settings.MEDIA_ROOT))
    rows = [
        [str(k), f"Car {k}", "", serve(http_server, f"/{k}.jpg", picture_bytes(k))] for k in (1, 2)
    ]
    write_csv(tmp_path / "cars.csv", rows)
    run_import(source=str(tmp_path / "cars.csv"), workers=2)
    assert len(media.names()) == 8

    response = admin_client.post(
        "/admin/cars/car/",
        {
            "action": "delete_selected",
            "_selected_action": [c.pk for c in Car.objects.all()],
            "post": "yes",
        },
    )

    assert response.status_code == 302, response.content[:300]
    assert not Car.objects.exists()
    assert not Picture.objects.exists()
    assert media.names() == set()


WAYS = ("prune", "image_removed", "image_changed", "refetch_fails", "admin_delete")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("way", WAYS)
def test_a_pictures_files_go_with_the_last_car_that_shows_it(
    way, media, http_server, tmp_path, client, request
):
    """Cars 1 and 2 show one picture (under two URLs), car 3 another. Taking the picture
    from car 1 keeps its files (car 2 shows them); taking it from car 2 deletes them."""
    shared, other = picture_bytes(0), picture_bytes(1)
    rows = {
        "1": ["1", "One", "", serve(http_server, "/one/shared.jpg", shared)],
        "2": ["2", "Two", "", serve(http_server, "/two/shared.jpg", shared, query="sig=a")],
        "3": ["3", "Three", "", serve(http_server, "/three/other.jpg", other)],
    }
    csv = tmp_path / "cars.csv"
    write_csv(csv, list(rows.values()))
    report = run_import(source=str(csv), workers=4)
    assert (report.counts.images_ok, report.pictures.new, report.pictures.shared) == (3, 2, 1)
    shared_names, other_names = picture_names(sha(shared)), picture_names(sha(other))
    assert len(shared_names) == len(other_names) == 4
    assert media.names() == shared_names | other_names

    def take_picture_from(key: str, step: int) -> None:
        car = Car.objects.get(external_key=key)
        if way == "prune":
            del rows[key]
            write_csv(csv, list(rows.values()))
            report = run_import(source=str(csv), prune=True, workers=4)
            assert report.counts.deleted == 1, report.summary()
        elif way == "image_removed":
            rows[key] = [*rows[key][:3], ""]
            write_csv(csv, list(rows.values()))
            report = run_import(source=str(csv), workers=4)
            assert report.counts.updated == 1, report.summary()
        elif way == "image_changed":
            new = serve(http_server, f"/{key}/new.jpg", picture_bytes(10 + step))
            rows[key] = [*rows[key][:3], new]
            write_csv(csv, list(rows.values()))
            report = run_import(source=str(csv), workers=4)
            assert (report.counts.updated, report.pictures.new) == (1, 1), report.summary()
        elif way == "refetch_fails":
            http_server.add(urlsplit(rows[key][3]).path, b"gone", status=404)
            report = run_import(source=str(csv), refresh_images=True, workers=4)
            failed = {(f.key, f.reason) for f in report.image_failures}
            assert failed == {(k, "http_error") for k in ("1", "2")[:step]}, report.as_dict()
        else:  # admin_delete
            admin = request.getfixturevalue("admin_client")
            response = admin.post(f"/admin/cars/car/{car.pk}/delete/", {"post": "yes"})
            assert response.status_code == 302, response.content[:300]
            assert not Car.objects.filter(pk=car.pk).exists()
        after = Car.objects.filter(pk=car.pk).first()
        assert after is None or after.picture_id != car.picture_id, "it still shows it"

    take_picture_from("1", step=1)

    two = Car.objects.select_related("picture").get(external_key="2")
    assert shown_names(two) == shared_names
    assert shared_names | other_names <= media.names(), "car 2 still shows these files"
    assert_storage_holds_what_cars_show(media)
    for name in shared_names:
        assert_served_for_good(media, client, name)

    take_picture_from("2", step=2)

    assert not Picture.objects.filter(sha256=sha(shared)).exists()
    assert not shared_names & media.names(), "no car shows these files any more"
    assert other_names <= media.names(), "car 3's picture is not touched"
    assert_storage_holds_what_cars_show(media)
    three = Car.objects.select_related("picture").get(external_key="3")
    assert shown_names(three) == other_names


# --------------------------------------------------------------------------- re-import


@pytest.mark.django_db(transaction=True)
def test_a_reimport_with_every_url_changed_and_no_byte_stores_and_renders_nothing(
    media, http_server, tmp_path, client, monkeypatch
):
    pictures = [picture_bytes(n) for n in range(4)]
    csv = tmp_path / "cars.csv"

    def write(version: str) -> None:
        write_csv(
            csv,
            [
                [
                    str(j),
                    f"Car {j}",
                    "",
                    serve(http_server, f"/{version}/{j % 4}.jpg", pictures[j % 4], f"sig={j}"),
                ]
                for j in range(12)
            ],
        )

    writes = StorageWrites().install(monkeypatch)
    with count_renders(monkeypatch, tmp_path / "renders.log") as renders:
        write("v1")
        first = run_import(source=str(csv), workers=4)
        # The counters see the first import: 4 pictures rendered, 4 files each written.
        assert (first.pictures.new, first.pictures.shared) == (4, 8), first.as_dict()
        assert sorted(renders()) == sorted(sha(data) for data in pictures)
        names_before = media.names()
        assert len(names_before) == 16 and sorted(writes.names) == sorted(names_before)
        rows_before = list(Picture.objects.order_by("pk").values())
        shown_before = dict(Car.objects.values_list("pk", "picture_id"))
        mtimes = (
            {name: (media.root / name).stat().st_mtime_ns for name in names_before}
            if media.kind == "local"
            else {}
        )
        mark = media.server.mark() if media.kind == "s3" else 0
        writes.names.clear()
        (tmp_path / "renders.log").write_text("")

        write("v2")  # every URL is new; the bytes behind them are not
        report = run_import(source=str(csv), workers=4)

    counts = report.counts
    assert (counts.updated, counts.images_ok, counts.images_failed) == (12, 12, 0)
    assert (report.pictures.new, report.pictures.shared) == (0, 12)
    assert writes.names == [], "nothing is written to the storage"
    assert renders() == [], "nothing is rendered"
    assert list(Picture.objects.order_by("pk").values()) == rows_before
    assert dict(Car.objects.values_list("pk", "picture_id")) == shown_before
    assert media.names() == names_before
    if media.kind == "local":
        assert {n: (media.root / n).stat().st_mtime_ns for n in names_before} == mtimes
    else:
        made = [str(r) for r in media.server.requests_since(mark) if r.method != "GET"]
        assert made == [], "no S3 write or delete"
    for car in Car.objects.all():
        detail = client.get(f"/api/cars/{car.pk}/").json()
        assert detail["source_image_url"].startswith(http_server.url("/v2/"))
        assert all(entry for entry in detail["images"].values())


# --------------------------------------------------------------------------- dry run


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_reports_new_and_shared_pictures_and_writes_nothing(
    http_server, tmp_path, settings, monkeypatch
):
    media = LocalMedia(Path(settings.MEDIA_ROOT))
    p = [picture_bytes(n) for n in range(4)]
    known = [
        ["1", "One", "", serve(http_server, "/p0.jpg", p[0])],
        ["2", "Two", "", serve(http_server, "/p1.jpg", p[1])],
    ]
    write_csv(tmp_path / "cars.csv", known)
    run_import(source=str(tmp_path / "cars.csv"), workers=4)
    write_csv(
        tmp_path / "cars.csv",
        [
            *known,  # unchanged: not fetched again
            ["3", "Three", "", serve(http_server, "/again/p0.jpg", p[0])],  # stored already
            ["4", "Four", "", serve(http_server, "/p2a.jpg", p[2])],  # new
            ["5", "Five", "", serve(http_server, "/p2b.jpg", p[2])],  # new, twice
            ["6", "Six", "", serve(http_server, "/p3.jpg", p[3])],  # new
            ["7", "Seven", "", http_server.url("/missing.jpg")],  # 404
        ],
    )
    cars_before = list(Car.objects.order_by("pk").values())
    pictures_before = list(Picture.objects.order_by("pk").values())
    jobs_before = ImportJob.objects.count()
    names_before = media.names()
    writes = StorageWrites().install(monkeypatch)

    out, _ = import_csv(
        str(tmp_path / "cars.csv"), "--dry-run", "--report", str(tmp_path / "dry.json")
    )

    dry = json.loads((tmp_path / "dry.json").read_text())
    assert out.strip().splitlines()[-1] == (
        "created 5, updated 0, unchanged 2, deleted 0, rejected 0 rows; images: 4 ok, 1 failed"
    )
    assert dry["pictures"] == {"new": 2, "shared": 2}
    assert [(f["key"], f["reason"]) for f in dry["image_failures"]] == [("7", "http_error")]
    assert writes.names == [] and media.names() == names_before
    assert list(Car.objects.order_by("pk").values()) == cars_before
    assert list(Picture.objects.order_by("pk").values()) == pictures_before
    assert ImportJob.objects.count() == jobs_before

    import_csv(str(tmp_path / "cars.csv"), "--report", str(tmp_path / "real.json"))
    real = json.loads((tmp_path / "real.json").read_text())
    assert (real["counts"], real["pictures"]) == (dry["counts"], dry["pictures"])
    assert Picture.objects.count() == 4


# --------------------------------------------------------------------------- concurrency


@dataclass
class Deployment:
    """The project as `manage.py` subprocesses run it: a scratch database, a MEDIA_ROOT."""

    env: dict[str, str]
    media: LocalMedia
    query: Callable[[str], list]
    logs: Path
    started: list[subprocess.Popen] = field(default_factory=list)

    def manage(self, *args: str) -> str:
        result = manage_in(ROOT, self.env, *args)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self, name: str, *args: str) -> subprocess.Popen:
        process = start_manage(self.env, *args, log=self.logs / f"{name}.log")
        self.started.append(process)
        return process

    def stop(self) -> None:
        """Kill what a failed test left running (only the processes it started)."""
        for process in self.started:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def finish(self, name: str, process: subprocess.Popen) -> str:
        assert process.wait(timeout=120) == 0, (self.logs / f"{name}.log").read_text()
        return (self.logs / f"{name}.log").read_text()

    def cars(self) -> dict[str, tuple[str, set[str]]]:
        """{external key: (image status, the names of the files it shows)}."""
        shown = {}
        for key, status, image, renditions in self.query(
            "SELECT c.external_key, c.image_status, p.image, p.renditions "
            "FROM cars_car c LEFT JOIN cars_picture p ON p.id = c.picture_id"
        ):
            if isinstance(renditions, str):
                renditions = json.loads(renditions)
            names = {image, *(r["name"] for r in (renditions or {}).values())} if image else set()
            shown[key] = (status, names)
        return shown


@pytest.fixture
def deployment(tmp_path):
    with scratch_database(tmp_path) as db:
        env = project_env(tmp_path, DATABASE_URL=db.url, CARS_FETCH_TIMEOUT="60")
        deployed = Deployment(env, LocalMedia(tmp_path / "media"), db.query, tmp_path)
        deployed.manage("migrate", "--noinput", "-v0")
        try:
            yield deployed
        finally:
            deployed.stop()


def assert_every_car_shows_existing_files(deployment: Deployment, keys: set[str]) -> None:
    cars = deployment.cars()
    assert set(cars) == keys
    stored = deployment.media.names()
    for key, (status, names) in cars.items():
        assert status == ImageStatus.READY and len(names) == 4, (key, status, names)
        assert names <= stored, f"car {key} shows missing files: {sorted(names - stored)}"
    shown = set().union(*(names for _, names in cars.values()))
    assert stored == shown, f"files no car shows: {sorted(stored - shown)}"
    pictures = deployment.query("SELECT COUNT(*) FROM cars_picture")[0][0]
    assert pictures == len(shown) // 4


def test_two_imports_storing_the_same_pictures_at_once_share_them(http_server, deployment):
    """Two CSVs share 5 of their 15 pictures; both imports run at once."""
    for name, numbers in {"a": range(10), "b": range(5, 15)}.items():
        rows = [
            [
                f"{name}{n}",
                f"Car {name}{n}",
                "",
                serve(http_server, f"/{name}/{n}.jpg", picture_bytes(n)),
            ]
            for n in numbers
        ]
        write_csv(deployment.logs / f"{name}.csv", rows)

    running = {}
    for name in ("a", "b"):
        csv, report = deployment.logs / f"{name}.csv", deployment.logs / f"{name}.json"
        running[name] = deployment.start(
            name, "import_csv", str(csv), "--no-progress", "--report", str(report)
        )
    for name, process in running.items():
        deployment.finish(name, process)

    reports = [json.loads((deployment.logs / f"{n}.json").read_text()) for n in ("a", "b")]
    assert [r["counts"]["images_ok"] for r in reports] == [10, 10]
    # Each shared picture was stored by one of them and found by the other.
    assert sum(r["pictures"]["new"] for r in reports) == 15
    assert sum(r["pictures"]["shared"] for r in reports) == 5
    assert_every_car_shows_existing_files(
        deployment, {f"a{n}" for n in range(10)} | {f"b{n}" for n in range(5, 15)}
    )


def test_an_import_sharing_a_picture_that_another_import_deletes_stores_it_again(
    http_server, deployment
):
    """Import B finds pictures X1, X2 stored (cars of import A show them) and waits for
    its third image; meanwhile A's cars move to other pictures, so X1 and X2 are
    deleted. B must store them again, not point its cars at files that are gone."""
    x = [picture_bytes(n) for n in range(2)]
    y = [picture_bytes(n) for n in range(2, 4)]
    z = picture_bytes(4)
    folder = deployment.logs
    write_csv(
        folder / "a.csv",
        [[f"a{n}", f"A{n}", "", serve(http_server, f"/a/x{n}.jpg", x[n])] for n in range(2)],
    )
    deployment.manage("import_csv", str(folder / "a.csv"), "--no-progress")
    x_names = {name for _, names in deployment.cars().values() for name in names}
    assert len(x_names) == 8

    held = hold(http_server, "/b/z.jpg", z)
    write_csv(
        folder / "b.csv",
        [
            *([f"b{n}", f"B{n}", "", serve(http_server, f"/b/x{n}.jpg", x[n])] for n in range(2)),
            ["b2", "B2", "", http_server.url("/b/z.jpg")],
        ],
    )
    b = deployment.start(
        "b",
        "import_csv",
        str(folder / "b.csv"),
        "--no-progress",
        "--report",
        str(folder / "b.json"),
    )
    try:
        asked = ("/b/x0.jpg", "/b/x1.jpg", "/b/z.jpg")
        wait_for(lambda: all(http_server.hits[p] for p in asked), "import B's fetches", 60)
        write_csv(
            folder / "a.csv",
            [[f"a{n}", f"A{n}", "", serve(http_server, f"/a/y{n}.jpg", y[n])] for n in range(2)],
        )
        deployment.manage("import_csv", str(folder / "a.csv"), "--no-progress")
        assert not x_names & deployment.media.names(), "A deleted X1, X2: no car showed them"
    finally:
        held.release()
    log = deployment.finish("b", b)

    report = json.loads((folder / "b.json").read_text())
    assert report["counts"]["images_ok"] == 3, log
    assert report["pictures"] == {"new": 3, "shared": 0}, "B stored X1 and X2 again, and Z"
    assert_every_car_shows_existing_files(deployment, {"a0", "a1", "b0", "b1", "b2"})
    assert deployment.cars()["b0"][1] | deployment.cars()["b1"][1] == x_names


# --------------------------------------------------------------------------- migration

# The API as the test client sees it, written to the file named by $ANSWERS: runs in
# `manage.py shell` of either version of the project.
CAPTURE = """
import json, os
from django.test import Client
client = Client()
rows = client.get("/api/cars/?limit=1000").json()
details = {str(r["id"]): client.get(f"/api/cars/{r['id']}/").json() for r in rows}
open(os.environ["ANSWERS"], "w").write(json.dumps({"list": rows, "details": details}))
"""


@dataclass
class Answer:
    """One API answer (a list or a car's detail) and the files it named that were gone
    when checked, just after it came; and those it named that an earlier check had
    already found gone."""

    path: str
    body: object
    missing: list[str] = field(default_factory=list)
    named_gone: list[str] = field(default_factory=list)


@dataclass
class Upgrade:
    media: LocalMedia
    legacy: set[str]  # the files of the old layout, before migrate_pictures
    old: dict  # the old code's API answers
    before: dict  # the new code's, before migrate_pictures
    during: list[Answer]
    after: dict
    after_answers: list[Answer]
    again: dict  # after running migrate_pictures a second time
    first_run: str
    second_run: str
    names_after: set[str]
    names_again: set[str]
    cars_after: list  # CAR_ROWS
    cars_again: list
    pictures_after: list  # PICTURE_ROWS
    pictures_again: list
    served: list[tuple[str, int, str]]


def names_in(answer) -> list[str]:
    """The stored names behind every image URL of a list or detail answer."""
    urls = []
    for row in answer if isinstance(answer, list) else [answer]:
        if row.get("image"):
            urls.append(row["image"])
        for images in [row.get("images"), *(p["images"] for p in row.get("pictures", []))]:
            urls += [entry["url"] for entry in (images or {}).values() if entry]
    return [media_name(url, "/media/") for url in urls]


# What a detail answers that the code before several pictures per car did not.
NEW_DETAIL_FIELDS = ("pictures", "attributes", "description_html")


def as_before_several_pictures(answer):
    """A detail without the fields added since, after checking that they say what a
    car of the old catalogue has: its one picture, the same as its `images`."""
    if isinstance(answer, list) or "images" not in answer:
        return answer
    source, error = answer["source_image_url"], answer["image_error"]
    own = {"source_url": source, "error": error, "images": answer["images"]}
    assert answer["pictures"] == ([own] if source else []), answer
    assert (answer["attributes"], answer["description_html"]) == ({}, None)
    return {k: v for k, v in answer.items() if k not in NEW_DETAIL_FIELDS}


def without_urls(answer):
    """The answer with every image URL replaced by whether there is one."""
    if isinstance(answer, list):
        return [without_urls(row) for row in answer]
    answer = dict(answer)
    answer["image"] = bool(answer["image"])
    if "images" in answer:
        answer["images"] = _sizes(answer["images"])
    if "pictures" in answer:
        answer["pictures"] = [{**p, "images": _sizes(p["images"])} for p in answer["pictures"]]
    return answer


def _sizes(images: dict) -> dict:
    return {
        platform: entry and {"width": entry["width"], "height": entry["height"]}
        for platform, entry in images.items()
    }


def relative(answers: dict) -> dict:
    """Answers with absolute media URLs made stored names (hosts differ between runs)."""

    def strip(answer):
        if isinstance(answer, list):
            return [strip(row) for row in answer]
        answer = dict(answer)
        if answer.get("image"):
            answer["image"] = media_name(answer["image"], "/media/")
        if "images" in answer:
            answer["images"] = names(answer["images"])
        if "pictures" in answer:
            answer["pictures"] = [{**p, "images": names(p["images"])} for p in answer["pictures"]]
        return answer

    def names(images: dict) -> dict:
        return {p: e and {**e, "url": media_name(e["url"], "/media/")} for p, e in images.items()}

    return {
        "list": strip(answers["list"]),
        "details": {k: strip(v) for k, v in answers["details"].items()},
    }


def by_path(answers: dict) -> dict:
    return {
        "/api/cars/?limit=1000": answers["list"],
        **{f"/api/cars/{pk}/": body for pk, body in answers["details"].items()},
    }


def without_updated_at(answer):
    if isinstance(answer, list):
        return [without_updated_at(row) for row in answer]
    return {k: v for k, v in answer.items() if k != "updated_at"}


def json_value(value):
    return json.loads(value) if isinstance(value, str) else value


class Reader:
    """Reads the API of a running server and checks at once that the files it names exist.

    A file may go between an answer and the check (its car was moved meanwhile), but
    once a file was seen gone, no later answer may name it.
    """

    def __init__(self, base: str, media: LocalMedia):
        self.media = media
        self.http = httpx.Client(base_url=base, timeout=10, trust_env=False)
        self.gone: set[str] = set()

    def get(self, path: str) -> Answer:
        gone = set(self.gone)
        response = self.http.get(path)
        assert response.status_code == 200, (path, response.text[:300])
        body = response.json()
        stored = self.media.names()
        names = names_in(body)
        answer = Answer(
            path,
            body,
            missing=[n for n in names if n not in stored],
            named_gone=[n for n in names if n in gone],
        )
        self.gone |= set(answer.missing)
        return answer

    def capture(self) -> tuple[dict, list[Answer]]:
        listed = self.get("/api/cars/?limit=1000")
        details = {str(r["id"]): self.get(f"/api/cars/{r['id']}/") for r in listed.body}
        answers = [listed, *details.values()]
        return {"list": listed.body, "details": {k: a.body for k, a in details.items()}}, answers


def old_catalogue(folder: Path) -> Path:
    """Cars on the old layout: some with the same bytes (under one path, or two), one
    without an image, one whose image failed."""
    small_catalog(folder)
    (folder / "img" / "a-copy.jpg").write_bytes((folder / "img" / "a.jpg").read_bytes())
    (folder / "img" / "d.jpg").write_bytes(photo_like(1200, 900, seed=4))
    write_csv(
        folder / "cars.csv",
        [
            ["1", "Alpha", "First car", "img/a.jpg"],
            ["2", "Beta", "Second car", "img/b.png"],
            ["3", "Gamma", "Third car", "img/c.jpg"],
            ["4", "Delta", "No image", ""],
            ["5", "Epsilon", "Alpha's picture, another file", "img/a-copy.jpg"],
            ["6", "Zeta", "Alpha's picture, the same file", "img/a.jpg"],
            ["7", "Eta", "Its file is missing", "img/missing.jpg"],
            ["8", "Theta", "A picture of its own", "img/d.jpg"],
            *([str(k), f"Car {k}", "Slow to render", f"img/e{k}.jpg"] for k in range(9, 15)),
        ],
    )
    for k in range(9, 15):  # more pictures to move, so the API is read mid-way
        (folder / "img" / f"e{k}.jpg").write_bytes(photo_like(1200, 900, seed=k))
    return folder / "cars.csv"


CAR_ROWS = (
    "SELECT id, external_key, picture_id, legacy_image, legacy_renditions, image_status, "
    "image_error, image_fetched_from, updated_at FROM cars_car ORDER BY id"
)
PICTURE_ROWS = "SELECT id, sha256, image, renditions, created_at FROM cars_picture ORDER BY id"


@pytest.fixture(scope="module")
def upgrade(tmp_path_factory) -> Upgrade:
    """A database and media made by the old code, upgraded and moved while serving."""
    root = tmp_path_factory.mktemp("upgrade")
    old = old_checkout(root / "old")
    csv = old_catalogue(root / "catalog")
    media = LocalMedia(root / "media")
    with scratch_database(root) as db:
        env = project_env(root, DATABASE_URL=db.url, ANSWERS=str(root / "answers.json"))

        def ok(result) -> str:
            assert result.returncode == 0, result.stdout + result.stderr
            return result.stdout

        ok(manage_in(old, env, "migrate", "--noinput", "-v0"))
        ok(manage_in(old, env, "import_csv", str(csv), "--no-progress"))
        ok(manage_in(old, env, "shell", "-v0", "-c", CAPTURE))
        old_answers = json.loads((root / "answers.json").read_text())
        legacy = media.names()

        ok(manage_in(ROOT, env, "migrate", "--noinput", "-v0"))
        with runserver(env, root / "runserver.log") as base:
            reader = Reader(base, media)
            before, before_answers = reader.capture()
            during = list(before_answers)
            moving = start_manage(env, "migrate_pictures", "--batch", "1", log=root / "move.log")
            car_ids = [str(row["id"]) for row in before["list"]]
            turn = 0
            while moving.poll() is None:
                during.append(reader.get("/api/cars/?limit=1000"))
                during.append(reader.get(f"/api/cars/{car_ids[turn % len(car_ids)]}/"))
                turn += 1
            assert moving.wait() == 0, (root / "move.log").read_text()
            first_run = (root / "move.log").read_text()
            after, after_answers = reader.capture()
            during += after_answers
            names_after = media.names()
            cars_after, pictures_after = db.query(CAR_ROWS), db.query(PICTURE_ROWS)
            served = []
            for name in sorted(names_after):
                response = reader.http.get(f"/media/{name}")
                served.append((name, response.status_code, response.headers.get("cache-control")))
            second_run = ok(manage_in(ROOT, env, "migrate_pictures"))
            again, _ = reader.capture()
            names_again = media.names()
            cars_again, pictures_again = db.query(CAR_ROWS), db.query(PICTURE_ROWS)
            return Upgrade(
                media=media,
                legacy=legacy,
                old=old_answers,
                before=before,
                during=during,
                after=after,
                after_answers=after_answers,
                again=again,
                first_run=first_run,
                second_run=second_run,
                names_after=names_after,
                names_again=names_again,
                cars_after=cars_after,
                cars_again=cars_again,
                pictures_after=pictures_after,
                pictures_again=pictures_again,
                served=served,
            )


def test_upgrading_changes_no_answer_until_pictures_are_moved(upgrade):
    assert len(upgrade.legacy) == 12 * 4, "the old code stored a copy per car"
    assert all(LEGACY_NAME.match(name) for name in upgrade.legacy)
    before = relative(upgrade.before)
    before["details"] = {k: as_before_several_pictures(v) for k, v in before["details"].items()}
    assert before == relative(upgrade.old)


def test_migrate_pictures_keeps_every_answer_the_same_apart_from_urls(upgrade):
    expected = {path: without_urls(body) for path, body in by_path(upgrade.before).items()}
    assert len(upgrade.during) > len(expected)
    for answer in upgrade.during:
        got, want = without_urls(answer.body), expected[answer.path]
        assert without_updated_at(got) == without_updated_at(want), answer.path
    # Moving a car's files is no change of the car: `updated_at` (and ordering by it) stays.
    before = {str(r["id"]): r["updated_at"] for r in upgrade.before["details"].values()}
    after = {str(r["id"]): r["updated_at"] for r in upgrade.after["details"].values()}
    changed = {pk: (before[pk], after[pk]) for pk in before if before[pk] != after[pk]}
    assert changed == {}, "migrate_pictures changed updated_at (before, after)"


def test_migrate_pictures_serves_existing_files_before_during_and_after(upgrade):
    # A car's own files may go between an answer and its check (the car was moved
    # meanwhile); a picture's files never, and no answer names a file already gone.
    assert [(a.path, a.named_gone) for a in upgrade.during if a.named_gone] == []
    missing = {name for a in upgrade.during for name in a.missing}
    assert all(LEGACY_NAME.match(name) for name in missing), missing
    assert [a.missing for a in upgrade.after_answers if a.missing] == []
    mixed = [
        a
        for a in upgrade.during
        if a.path.startswith("/api/cars/?")
        and len({bool(LEGACY_NAME.match(n)) for n in names_in(a.body)}) == 2
    ]
    assert mixed, "no answer was read while some cars were moved and others not"
    assert upgrade.served and all(
        (status, cache) == (200, IMMUTABLE) for _, status, cache in upgrade.served
    ), upgrade.served


def test_migrate_pictures_leaves_one_picture_per_content_and_no_legacy_file(upgrade):
    assert upgrade.first_run.strip().endswith("moved 12 cars; 0 left as they were (see above)")
    assert not any(LEGACY_NAME.match(name) for name in upgrade.names_after)
    assert len(upgrade.names_after) == 10 * 4, "10 pictures: one original, 3 renditions each"
    cars = upgrade.cars_after
    assert all(legacy_image == "" for _, _, _, legacy_image, *_ in cars)
    assert all(json_value(renditions) == {} for _, _, _, _, renditions, *_ in cars)
    pictures = {row[0] for row in upgrade.pictures_after}
    shown = [picture for _, key, picture, *_ in cars if key not in ("4", "7")]
    assert set(shown) == pictures and len(pictures) == 10
    alpha = {key: picture for _, key, picture, *_ in cars}
    assert alpha["1"] == alpha["5"] == alpha["6"], "the same bytes are one picture"
    listed = {row["title"]: row["image"] for row in upgrade.after["list"]}
    assert listed["Alpha"] == listed["Epsilon"] == listed["Zeta"]
    assert listed["Delta"] is None and listed["Eta"] is None


def test_migrate_pictures_run_again_changes_nothing(upgrade):
    assert upgrade.second_run.strip().endswith("moved 0 cars; 0 left as they were (see above)")
    assert upgrade.again == upgrade.after
    assert upgrade.names_again == upgrade.names_after
    assert upgrade.cars_again == upgrade.cars_after
    assert upgrade.pictures_again == upgrade.pictures_after


@pytest.mark.django_db(transaction=True)
def test_an_old_layout_car_loses_its_own_files_to_a_new_picture_or_a_failed_one(
    http_server, tmp_path, settings
):
    """A car not yet moved by `migrate_pictures` keeps its own files (original and
    renditions). An import that gives it a new picture deletes them once that commits,
    as does one whose new picture fails (the car shows none, and says why, as a car on
    the new layout would); an old-layout car the import leaves alone keeps its files and
    shows them."""
    media = LocalMedia(Path(settings.MEDIA_ROOT))
    files = {}
    for key in ("1", "2", "3"):
        names = [f"cars/{key}/original.jpg", f"cars/{key}/web.jpg", f"cars/{key}/mobile.jpg"]
        for name in names:
            (Path(settings.MEDIA_ROOT) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(settings.MEDIA_ROOT) / name).write_bytes(picture_bytes(int(key)))
        files[key] = set(names)
        old_url = f"http://old.example/{key}.jpg"
        Car.objects.create(
            external_key=key,
            title=f"Car {key}",
            source_image_url=old_url,
            image_fetched_from=old_url,
            image_status=ImageStatus.READY,
            legacy_image=names[0],
            legacy_renditions={
                "web": {"name": names[1], "width": 800, "height": 600},
                "mobile": {"name": names[2], "width": 400, "height": 300},
            },
        )
    assert media.names() == files["1"] | files["2"] | files["3"]
    new = picture_bytes(7)
    http_server.add("/three/gone.jpg", b"gone", status=404)
    csv = write_csv(
        tmp_path / "cars.csv",
        [
            ["1", "Car 1", "", serve(http_server, "/one/new.jpg", new)],
            ["2", "Car 2", "", "http://old.example/2.jpg"],
            ["3", "Car 3", "", http_server.url("/three/gone.jpg")],
        ],
    )

    report = run_import(source=str(csv), workers=2)

    assert (report.counts.images_ok, report.pictures.new) == (1, 1), report.as_dict()
    assert [(f.line, f.key, f.reason) for f in report.image_failures] == [(4, "3", "http_error")]
    three = Car.objects.get(external_key="3")
    assert (three.image_status, three.image_error, three.picture_id) == (
        ImageStatus.FAILED,
        "http_error",
        None,
    )
    assert (three.legacy_image.name, three.legacy_renditions) == ("", {})
    assert not files["3"] & media.names(), "a failed picture shows nothing, old files neither"
    one, two = Car.objects.get(external_key="1"), Car.objects.get(external_key="2")
    assert one.picture.sha256 == sha(new)
    assert (one.legacy_image.name, one.legacy_renditions) == ("", {})
    assert not files["1"] & media.names(), "its own files go with the picture it showed"
    assert two.legacy_image.name == "cars/2/original.jpg" and not two.picture_id
    assert files["2"] | picture_names(sha(new)) == media.names()

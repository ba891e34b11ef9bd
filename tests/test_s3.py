"""S3 storage (SPEC §2, §5, §6) end to end, against a real S3 wire-protocol server.

moto's S3 server runs in a subprocess on 127.0.0.1 (tests/support/s3.py); each test gets a
bucket of its own, publicly readable through a bucket policy as production's is (objects
are stored with no ACL: `default_acl` None), and switches Django's default storage to
django-storages' S3Storage by overriding `STORAGES`, with the options config/settings/base.py
builds when `USE_S3=true`. Cars are imported by the real importer from a CSV naming real
image files, and read through the real API with Django's test client.

Requests are counted where they arrive: in the S3 server's own request log, so "zero S3
requests per API request" covers every client (django-storages' thread-local boto3
clients, imagekit, anything else in the process).
"""

from __future__ import annotations

import hashlib
import io
import re
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from django.conf import settings as django_settings
from django.core.files.storage import FileSystemStorage, default_storage, storages
from django.test import override_settings
from imagekit.utils import get_storage as imagekit_storage
from PIL import Image

pytest.importorskip("moto", reason="moto[server] is not installed: these tests need its S3 server")

from storages.backends.s3 import S3Storage

from cars.models import Car, Picture
from imports.services import run_import
from tests.support.catalog import small_catalog, write_csv
from tests.support.images import jpeg_bytes
from tests.support.project import project_env, run
from tests.support.s3 import (
    ACCESS_KEY,
    REGION,
    SECRET_KEY,
    Bucket,
    MotoServer,
    S3Request,
    make_bucket,
)

pytestmark = pytest.mark.django_db

S3_BACKEND = "storages.backends.s3.S3Storage"
CDN = "cdn.example.test"
PLATFORMS = ("default", "web", "mobile")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the whole run (each test has its own bucket in it)."""
    with MotoServer() as server:
        yield server


def s3_storages(bucket: Bucket, **options: Any) -> dict:
    return {
        **django_settings.STORAGES,
        "default": {
            "BACKEND": S3_BACKEND,
            "OPTIONS": bucket.server.storage_options(bucket.name, **options),
        },
    }


@pytest.fixture
def bucket(s3_server) -> Bucket:
    return make_bucket(s3_server)


@pytest.fixture
def s3(settings, bucket) -> Bucket:
    """The default storage is the test's bucket (until the `settings` fixture restores it)."""
    settings.STORAGES = s3_storages(bucket)
    return bucket


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A folder with three images and a CSV naming them (plus one car without an image)."""
    return small_catalog(tmp_path / "catalog") / "cars.csv"


def owned_keys(car: Car) -> set[str]:
    return {car.image.name, *(entry["name"] for entry in car.renditions.values())}


def media_files(settings) -> list[Path]:
    media = Path(settings.MEDIA_ROOT)
    return [p for p in media.rglob("*") if p.is_file()] if media.exists() else []


# --------------------------------------------------------------------------- settings


def test_overriding_storages_switches_django_and_imagekit_to_the_bucket(settings, bucket):
    filesystem = {**django_settings.STORAGES}
    assert isinstance(storages["default"], FileSystemStorage)

    settings.STORAGES = s3_storages(bucket)

    # Django's setting_changed handler dropped the cached backends and default_storage.
    storage = storages["default"]
    assert isinstance(storage, S3Storage) and storage.bucket_name == bucket.name
    assert isinstance(default_storage, S3Storage)
    assert default_storage._wrapped is storage
    # imagekit asks `storages[...]` for every cache file, so renditions follow.
    assert imagekit_storage() is storage
    picture = Picture(image=f"images/{'0' * 64}.jpg")
    assert picture.image.storage._wrapped is storage
    for platform in PLATFORMS:
        assert getattr(picture, f"image_{platform}").storage is storage
    # The production botocore client settings (bounded timeouts, few retries) apply.
    production = django_settings.AWS_S3_CLIENT_CONFIG
    assert storage.client_config is production
    config = storage.connection.meta.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (
        production.connect_timeout,
        production.read_timeout,
    )

    with override_settings(STORAGES=filesystem):
        assert isinstance(default_storage, FileSystemStorage)
        assert isinstance(imagekit_storage(), FileSystemStorage)
        assert isinstance(picture.image_web.storage, FileSystemStorage)
    assert isinstance(default_storage, S3Storage)
    assert imagekit_storage().bucket_name == bucket.name


# --------------------------------------------------------------------------- import


def test_import_stores_originals_and_renditions_in_the_bucket(s3, catalog, settings):
    start = s3.server.mark()
    report = run_import(source=str(catalog), workers=4)
    made = s3.server.requests_since(start)

    counts = report.counts
    assert (counts.created, counts.images_ok, counts.images_failed) == (4, 3, 0), report.summary()
    assert (report.pictures.new, report.pictures.shared) == (3, 0)
    cars = {car.external_key: car for car in Car.objects.all()}
    expected = set()
    for key, file in (("1", "a.jpg"), ("2", "b.png"), ("3", "c.jpg")):
        car = cars[key]
        sha256 = hashlib.sha256((catalog.parent / "img" / file).read_bytes()).hexdigest()
        assert car.image.name == f"images/{sha256}{Path(file).suffix}", car.image.name
        assert set(car.renditions) == set(PLATFORMS)
        for entry in car.renditions.values():
            assert re.fullmatch(rf"CACHE/images/{sha256}/[0-9a-f]{{32}}\.jpg", entry["name"])
        expected |= owned_keys(car)
    assert not cars["4"].image and cars["4"].renditions == {}
    assert s3.keys() == expected, "the bucket holds exactly the originals and renditions"
    assert media_files(settings) == [], "nothing is written to MEDIA_ROOT"

    alpha = cars["1"]
    assert s3.get(alpha.image.name) == (catalog.parent / "img" / "a.jpg").read_bytes()
    web = alpha.renditions["web"]
    with Image.open(io.BytesIO(s3.get(web["name"]))) as img:
        assert img.format == "JPEG"
        assert img.size == (web["width"], web["height"]) == (1280, 960)
    with Image.open(io.BytesIO(s3.get(alpha.renditions["mobile"]["name"]))) as img:
        assert img.size == (640, 480)
    head = s3.head(web["name"])
    assert head["ContentType"] == "image/jpeg"
    assert head["CacheControl"] == "public, max-age=31536000, immutable"

    # The server saw the import write every object once (so the request counter works).
    written = [s3.key_of(r) for r in made if r.method == "PUT"]
    assert sorted(written) == sorted(expected), [str(r) for r in made]


# --------------------------------------------------------------------------- API


@pytest.fixture
def imported(s3, catalog) -> dict[str, Car]:
    report = run_import(source=str(catalog), workers=4)
    assert report.counts.images_ok == 3, report.summary()
    return {car.title: car for car in Car.objects.all()}


def assert_unsigned(url: str) -> None:
    query = urlsplit(url).query
    assert "Signature" not in url and "X-Amz-" not in url and not query, url


def test_api_urls_point_at_the_bucket_and_serve_the_renditions(client, s3, imported):
    alpha = imported["Alpha"]
    lists = {"default": "/api/cars/", "web": "/api/cars/web/", "mobile": "/api/cars/mobile/"}
    for platform, path in lists.items():
        response = client.get(path)
        assert response.status_code == 200, response.content[:300]
        images = {row["title"]: row["image"] for row in response.json()}
        assert images["Delta"] is None
        for title in ("Alpha", "Beta", "Gamma"):
            name = imported[title].renditions[platform]["name"]
            assert images[title] == f"{s3.endpoint}/{name}", (platform, title)
            assert_unsigned(images[title])

    detail = client.get(f"/api/cars/web/{alpha.pk}/").json()
    assert detail["image"] == detail["images"]["web"]["url"]
    for platform, entry in detail["images"].items():
        assert entry["url"] == f"{s3.endpoint}/{alpha.renditions[platform]['name']}"
        assert_unsigned(entry["url"])
        # The URL is public: a plain anonymous GET from the S3 server returns the JPEG.
        fetched = httpx.get(entry["url"], timeout=10, trust_env=False)
        assert fetched.status_code == 200, (entry["url"], fetched.text[:200])
        assert fetched.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(fetched.content)) as img:
            assert img.format == "JPEG"
            assert img.size == (entry["width"], entry["height"])


def test_a_custom_domain_serves_every_api_url(client, settings, s3, imported):
    settings.STORAGES = s3_storages(s3, custom_domain=CDN)
    alpha = imported["Alpha"]

    start = s3.server.mark()
    rows = client.get("/api/cars/mobile/").json()
    detail = client.get(f"/api/cars/{alpha.pk}/").json()
    assert s3.server.requests_since(start) == []

    urls = [row["image"] for row in rows if row["image"]]
    urls += [entry["url"] for entry in detail["images"].values()]
    assert len(urls) == 3 + 3
    for url in urls:
        assert url.startswith(f"https://{CDN}/CACHE/images/"), url
        assert_unsigned(url)
    assert detail["images"]["web"]["url"] == f"https://{CDN}/{alpha.renditions['web']['name']}"


@pytest.fixture
def twenty_cars(s3, tmp_path) -> tuple[list[Car], list[S3Request]]:
    folder = tmp_path / "twenty"
    folder.mkdir()
    rows = []
    for i in range(20):
        (folder / f"car{i}.jpg").write_bytes(jpeg_bytes(200 + 8 * i, 150))
        rows.append([str(i), f"Car {i}", f"Number {i}", f"car{i}.jpg"])
    write_csv(folder / "cars.csv", rows)
    start = s3.server.mark()
    report = run_import(source=str(folder / "cars.csv"), workers=4)
    made = s3.server.requests_since(start)
    assert (report.counts.created, report.counts.images_ok) == (20, 20), report.summary()
    return list(Car.objects.all()), made


@pytest.mark.parametrize("custom_domain", [None, CDN], ids=["s3-urls", "custom-domain"])
def test_api_requests_make_zero_s3_requests(client, settings, s3, twenty_cars, custom_domain):
    cars, import_requests = twenty_cars
    # The counter sees the import's traffic: an original and 3 renditions written per car.
    assert sum(r.method == "PUT" for r in import_requests) == 20 * 4
    settings.STORAGES = s3_storages(s3, custom_domain=custom_domain)  # a cold storage
    pk = cars[7].pk
    urls = ["/api/cars/", "/api/cars/web/", "/api/cars/mobile/?limit=20"]
    urls += [f"/api/cars/{pk}/", f"/api/cars/web/{pk}/"]

    start = s3.server.mark()
    bodies = [client.get(url) for url in urls]
    made = s3.server.requests_since(start)

    assert made == [], [str(r) for r in made]
    assert [r.status_code for r in bodies] == [200] * len(urls)
    lists, details = [r.json() for r in bodies[:3]], [r.json() for r in bodies[3:]]
    assert all(len(rows) == 20 and all(row["image"] for row in rows) for rows in lists)
    base = f"https://{CDN}" if custom_domain else s3.endpoint
    assert lists[1][7]["image"] == f"{base}/{cars[7].renditions['web']['name']}"
    assert all(len(d["images"]) == 3 for d in details)


# --------------------------------------------------------------------------- re-import


@pytest.mark.django_db(transaction=True)  # a picture's objects go after the commit
def test_reimport_writes_nothing_and_a_new_image_deletes_the_old_objects(s3, catalog):
    run_import(source=str(catalog), workers=4)
    keys_before = s3.keys()

    start = s3.server.mark()
    report = run_import(source=str(catalog), workers=4)
    made = s3.server.requests_since(start)
    assert (report.counts.unchanged, report.counts.images_ok) == (4, 0), report.summary()
    assert [str(r) for r in made] == [], "an unchanged source costs no S3 request at all"
    assert s3.keys() == keys_before

    alpha = Car.objects.get(external_key="1")
    old = owned_keys(alpha)
    (catalog.parent / "img" / "a2.jpg").write_bytes(jpeg_bytes(640, 480))
    write_csv(
        catalog,
        [
            ["1", "Alpha", "First car", "img/a2.jpg"],  # a new picture
            ["2", "Beta", "Second car", "img/b.png"],
            ["3", "Gamma", "Third car", "img/c.jpg"],
            ["4", "Delta", "No image", ""],
        ],
    )
    start = s3.server.mark()
    report = run_import(source=str(catalog), workers=4)
    made = s3.server.requests_since(start)

    assert (report.counts.updated, report.counts.images_ok) == (1, 1), report.summary()
    alpha.refresh_from_db()
    new = owned_keys(alpha)
    keys = s3.keys()
    assert not old & keys, "no car shows the old picture: its objects are gone from the bucket"
    assert new <= keys and not old & new
    assert keys == (keys_before - old) | new
    deleted = [s3.key_of(r) for r in made if r.method == "DELETE"]
    assert sorted(deleted) == sorted(old), "only the old picture's objects, each once"
    written = [s3.key_of(r) for r in made if r.method == "PUT"]
    assert sorted(written) == sorted(new), "only the new picture's objects, each once"


# --------------------------------------------------------------------------- /readyz


def test_readyz_names_the_storage_when_s3_stops(client, settings):
    with MotoServer() as server:
        bucket = make_bucket(server)
        settings.STORAGES = s3_storages(bucket)
        response = client.get("/readyz")
        assert response.status_code == 200, response.content
        assert "storage" in response.json()["checks"]

        server.stop()
        started = time.monotonic()
        response = client.get("/readyz")
        elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["storage"]}
    assert elapsed < 10, f"the storage check took {elapsed:.1f} s with S3 down"


# --------------------------------------------------------------------------- uploaded CSVs

UPLOAD_SCRIPT = """
import django, sys
django.setup()
from django.core.files.uploadedfile import SimpleUploadedFile
from imports.uploads import discard_upload, store_upload
if sys.argv[1] == "store":
    body = b"title\\n<script>alert(document.cookie)</script>\\n"
    print("SOURCE " + store_upload(SimpleUploadedFile("cars.csv", body, content_type="text/html")))
else:
    discard_upload(sys.argv[2])
"""


def test_an_uploaded_csv_goes_to_the_private_bucket_as_a_csv_attachment(s3_server, tmp_path):
    """Security review #15, item 3: with S3 an upload was stored in the public media
    bucket with the Content-Type its uploader chose: text/html with a <script> body was
    served from the site's own origin (/media/ on the compose stack). Production settings
    in a process of their own, against the S3 server: the media bucket public-read, the
    uploads bucket private, as docker-compose.yml and deploy/k8s make them."""
    media = make_bucket(s3_server)
    private = f"imports-{uuid.uuid4().hex[:12]}"
    media.client.create_bucket(Bucket=private)
    env = project_env(
        tmp_path,
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="x7!k2-production-secret-key-long-enough-for-check-deploy-0123456789abcdef",
        ALLOWED_HOSTS="cars.example.com",
        USE_S3="true",
        AWS_STORAGE_BUCKET_NAME=media.name,
        AWS_IMPORTS_BUCKET_NAME=private,
        AWS_S3_ENDPOINT_URL=s3_server.url,
        AWS_S3_REGION_NAME=REGION,
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
    )

    stored = run(["-c", UPLOAD_SCRIPT, "store"], env)
    assert stored.returncode == 0, stored.stderr
    source = stored.stdout.split("SOURCE ", 1)[1].strip()
    key = source.removeprefix("upload:")

    assert re.fullmatch(r"imports/[0-9a-f]{32}/cars\.csv", key), source
    assert not media.keys(), "nothing in the public media bucket"
    head = media.client.head_object(Bucket=private, Key=key)
    assert head["ContentType"] == "text/csv"  # whatever the uploader said
    assert head["ContentDisposition"] == "attachment"
    assert head["CacheControl"] == "private, no-store"
    anonymous = httpx.get(f"{s3_server.url}/{private}/{key}", trust_env=False)
    assert anonymous.status_code == 403, "an anonymous reader gets nothing"
    body = media.client.get_object(Bucket=private, Key=key)["Body"].read()
    assert b"<script>" in body  # kept as it came, for the importer to read and refuse

    discarded = run(["-c", UPLOAD_SCRIPT, "discard", source], env)
    assert discarded.returncode == 0, discarded.stderr
    listed = media.client.list_objects_v2(Bucket=private).get("Contents", [])
    assert listed == [], "deleted once its job has ended"

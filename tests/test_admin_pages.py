"""The admin's people-facing pages (SPEC §7): the cars list and page, the "Retry failed
images" action, and the "Import CSV" page (a URL or an uploaded file).

Real CSVs, real images over real sockets (the local HTTP server), the real importer.
What a browser makes of the import page is in test_browser.py.
"""

import contextlib
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from cars.models import Car, ImageStatus
from imports.fetching import FetchPolicy
from imports.lifecycle import create_job
from imports.models import ImportJob
from imports.pictures.retry import retry_failed_images
from imports.runner import run_job as execute_job
from imports.services import run_import
from imports.sources import SourceError, open_source
from imports.uploads import store_upload, upload_storage
from tests.support.catalog import csv_bytes
from tests.support.images import jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db

CARS = "/admin/cars/car/"
JOBS = "/admin/imports/importjob/"
IMPORT_CSV = "/admin/imports/importjob/import-csv/"
JPEG = {"Content-Type": "image/jpeg"}


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []


@pytest.fixture
def catalog(http_server) -> dict[str, Car]:
    """Four cars from a CSV on the local server: one image fine, one missing (404), one
    not an image, one car without an image."""
    http_server.add("/ok.jpg", jpeg_bytes(900, 600), headers=JPEG)
    http_server.add("/junk.jpg", b"<html>not a picture</html>", headers=JPEG)
    http_server.add(
        "/cars.csv",
        csv_bytes(
            [
                ["1", "Good Car", "Its picture is fine", http_server.url("/ok.jpg")],
                ["2", "Flaky Car", "Its picture is not there yet", http_server.url("/later.jpg")],
                ["3", "Junk Car", "Its picture is HTML", http_server.url("/junk.jpg")],
                ["4", "Bare Car", "No picture at all", ""],
            ]
        ),
    )
    report = run_import(source=http_server.url("/cars.csv"), workers=2)
    assert (report.counts.images_ok, report.counts.images_failed) == (1, 2), report.summary()
    return {car.title: car for car in Car.objects.all()}


def retry(client: Client, *cars: Car):
    return client.post(
        CARS,
        {"action": "retry_failed_images", "_selected_action": [str(car.pk) for car in cars]},
        follow=True,
    )


# --------------------------------------------------------------------------- the cars


def test_the_cars_list_shows_thumbnails_status_and_reason(admin_client, catalog):
    html = admin_client.get(CARS).content.decode()

    good = catalog["Good Car"]
    thumbnail = default_storage.url(good.renditions["mobile"]["name"])
    assert f'<img src="{thumbnail}"' in html
    assert html.count('style="height:48px') == 1  # only the car that has a picture
    assert "http_error" in html and "invalid_image" in html
    assert "Failed" in html and "Ready" in html and "No image" in html


@pytest.mark.parametrize(
    ("query", "titles"),
    [
        ({"image_status__exact": "failed"}, {"Flaky Car", "Junk Car"}),
        ({"image_status__exact": "none"}, {"Bare Car"}),
        ({"image_error__exact": "invalid_image"}, {"Junk Car"}),
        ({"q": "HTML"}, {"Junk Car"}),
    ],
)
def test_the_cars_list_filters_by_status_and_reason_and_searches(
    admin_client, catalog, query, titles
):
    response = admin_client.get(CARS, query)

    assert response.status_code == 200
    assert {car.title for car in response.context["cl"].result_list} == titles


def test_a_car_page_shows_every_platform_rendition_with_its_size(admin_client, catalog):
    car = catalog["Good Car"]
    html = admin_client.get(f"{CARS}{car.pk}/change/").content.decode()

    for platform, entry in car.renditions.items():
        assert default_storage.url(entry["name"]) in html
        assert f"{platform}: {entry['width']}×{entry['height']}" in html
    assert "web: 900×600" in html and "mobile: 640×427" in html


# --------------------------------------------------------------------------- retrying


def test_retrying_fetches_again_the_failed_images_of_the_selected_cars(
    admin_client, catalog, http_server
):
    http_server.add("/later.jpg", png_bytes(400, 300), headers={"Content-Type": "image/png"})
    before = {c.title: (c.updated_at, c.renditions) for c in Car.objects.all()}

    response = retry(admin_client, *catalog.values())

    assert messages_of(response) == [
        "Retried the images of 2 car(s): 1 fixed, 1 still failing (invalid_image: 1)."
    ]
    flaky = Car.objects.get(title="Flaky Car")
    assert (flaky.image_status, flaky.image_error, flaky.image_error_message) == (
        ImageStatus.READY,
        None,
        "",
    )
    assert flaky.renditions["mobile"]["width"] == 400  # never upscaled
    assert default_storage.exists(flaky.renditions["web"]["name"])
    junk = Car.objects.get(title="Junk Car")
    assert (junk.image_status, junk.image_error) == (ImageStatus.FAILED, "invalid_image")
    # The cars whose image had not failed were left alone.
    for title in ("Good Car", "Bare Car"):
        car = Car.objects.get(title=title)
        assert (car.updated_at, car.renditions) == before[title]
    assert http_server.hits["/ok.jpg"] == 1


def test_the_gallery_shows_a_picture_once_it_is_retried(admin_client, client, catalog, http_server):
    assert "the image server answered with an error" in client.get("/").content.decode()
    http_server.add("/later.jpg", jpeg_bytes(640, 480), headers=JPEG)

    retry(admin_client, catalog["Flaky Car"])

    html = client.get("/").content.decode()
    assert "the image server answered with an error" not in html
    assert 'alt="Flaky Car"' in html


def test_a_relative_image_path_is_skipped_and_its_car_left_as_it_was(admin_client, tmp_path):
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "cars.csv").write_bytes(csv_bytes([["9", "Local Car", "", "pics/gone.jpg"]]))
    run_import(source=str(folder / "cars.csv"), workers=1)
    car = Car.objects.get()
    assert (car.image_status, car.image_error) == (ImageStatus.FAILED, "unreachable")
    (folder / "pics").mkdir()
    (folder / "pics" / "gone.jpg").write_bytes(jpeg_bytes(64, 48))  # where only its CSV knows

    response = retry(admin_client, car)

    [message] = messages_of(response)
    assert "0 fixed, 0 still failing; 1 skipped" in message
    assert "by importing its CSV again" in message
    after = Car.objects.get()
    assert (after.image_status, after.image_error, after.updated_at) == (
        ImageStatus.FAILED,
        "unreachable",
        car.updated_at,
    )


def test_retrying_cars_none_of_which_failed_says_so(admin_client, catalog):
    response = retry(admin_client, catalog["Good Car"], catalog["Bare Car"])

    assert messages_of(response) == ["None of the selected cars has a failed image."]


def test_with_a_broker_the_retry_goes_to_a_worker_after_commit(
    admin_client, catalog, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from imports import tasks

    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.retry_images, "delay", lambda *args: queued.append(args))

    with django_capture_on_commit_callbacks(execute=True):
        response = retry(admin_client, *catalog.values())

    failed_ids = sorted(catalog[t].pk for t in ("Flaky Car", "Junk Car"))
    assert [sorted(ids) for (ids,) in queued] == [failed_ids]
    assert "on a worker" in messages_of(response)[0]
    assert Car.objects.get(title="Flaky Car").image_status == ImageStatus.FAILED  # not yet


def test_the_retry_task_runs_the_service(catalog, http_server):
    from imports.tasks import retry_images

    http_server.add("/later.jpg", jpeg_bytes(320, 240), headers=JPEG)

    retry_images.apply(args=[[catalog["Flaky Car"].pk]]).get()

    assert Car.objects.get(title="Flaky Car").image_status == ImageStatus.READY


def test_retry_ignores_ids_of_cars_that_are_gone(catalog):
    outcome = retry_failed_images(car_ids=[999_999])

    assert (outcome.ok, outcome.failed, outcome.skipped) == (0, 0, 0)


# --------------------------------------------------------------------------- Import CSV


def test_the_jobs_list_links_to_the_import_page(admin_client):
    html = admin_client.get(JOBS).content.decode()

    assert f'href="{IMPORT_CSV}"' in html
    page = admin_client.get(IMPORT_CSV)
    assert page.status_code == 200
    body = page.content.decode()
    assert 'enctype="multipart/form-data"' in body
    assert "CSV URL" in body and "or a CSV file" in body


def test_importing_from_a_url_runs_a_job_and_shows_it(admin_client, admin_user, http_server):
    http_server.add("/a.jpg", jpeg_bytes(800, 600), headers=JPEG)
    http_server.add("/c.csv", csv_bytes([["1", "Alpha", "", http_server.url("/a.jpg")]]))

    response = admin_client.post(IMPORT_CSV, {"url": http_server.url("/c.csv")})

    job = ImportJob.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"{JOBS}{job.pk}/change/"
    assert (job.source, job.trigger, job.created_by, job.prune) == (
        http_server.url("/c.csv"),
        "admin",
        admin_user,
        False,
    )
    assert job.status == "succeeded"
    page = admin_client.get(response["Location"])
    assert messages_of(page) == [
        f"Import #{job.pk} succeeded: created 1, updated 0, unchanged 0, deleted 0, "
        "rejected 0 rows; images: 1 ok, 0 failed"
    ]
    assert Car.objects.get().image_status == ImageStatus.READY


def upload_exists(source: str) -> bool:
    return upload_storage().exists(source.removeprefix("upload:"))


def test_an_uploaded_csv_is_stored_and_imported_by_the_same_importer(
    admin_client, http_server, settings
):
    http_server.add("/a.jpg", jpeg_bytes(800, 600), headers=JPEG)
    data = csv_bytes(
        [
            ["1", "Alpha", "fine", http_server.url("/a.jpg")],
            ["2", "", "no title", ""],
            ["3", "Gamma", "relative path", "pics/gamma.jpg"],
        ]
    )
    upload = SimpleUploadedFile("../my cars.csv", data, content_type="text/csv")

    response = admin_client.post(IMPORT_CSV, {"file": upload, "prune": "on"})

    job = ImportJob.objects.get()
    assert response["Location"] == f"{JOBS}{job.pk}/change/"
    name = job.source.removeprefix("upload:")
    assert re.fullmatch(r"imports/[0-9a-f]{32}/my_cars\.csv", name), job.source
    assert (job.status, job.prune) == ("succeeded", True), job.error
    assert (job.counts["created"], job.counts["rejected"]) == (2, 1)
    assert [r["reason"] for r in job.rejected_rows] == ["missing_title"]
    # An upload brings no folder of images: its relative paths are refused.
    assert [(f["key"], f["reason"]) for f in job.image_failures] == [("3", "blocked_path")]
    page = admin_client.get(response["Location"]).content.decode()
    assert "missing_title" in page and "blocked_path" in page
    assert not upload_exists(job.source)  # the job has ended: the file is gone


def test_an_upload_never_becomes_a_media_file_and_goes_when_its_job_ends(admin_client, settings):
    """Security review #15, item 3: an upload sent as text/html with a <script> body was
    kept under the media (public, on the site's own origin) as the uploader typed it."""
    payload = b"title\n<script>alert(document.cookie)</script>\n"
    upload = SimpleUploadedFile("cars.csv", payload, content_type="text/html")

    admin_client.post(IMPORT_CSV, {"file": upload})

    job = ImportJob.objects.get()
    assert job.source.startswith("upload:imports/")
    media = Path(settings.MEDIA_ROOT)
    assert not [p for p in media.rglob("*") if p.is_file()], "nothing under the media"
    assert not default_storage.exists(job.source.removeprefix("upload:"))
    # Run inline, the job has ended: its file and folder are gone from the private storage.
    assert job.status in ("succeeded", "failed")
    assert not upload_exists(job.source)
    uploads = Path(settings.STORAGES["imports"]["OPTIONS"]["location"])
    assert not [p for p in uploads.rglob("*") if p.is_file() or p.name != "imports"]


def test_an_upload_is_stored_privately_until_its_queued_job_runs(settings, tmp_path):
    source = store_upload(SimpleUploadedFile("x.csv", b"title\nA\n", content_type="text/html"))

    stored = Path(upload_storage().path(source.removeprefix("upload:")))
    assert stored.read_bytes() == b"title\nA\n"
    assert stored.is_relative_to(tmp_path / "uploads")  # settings.CARS_UPLOAD_ROOT, per test
    assert not stored.is_relative_to(settings.MEDIA_ROOT)
    assert stored.stat().st_mode & 0o777 == 0o600


LONG = "x" * 300 + ".csv"
WIDE = "車" * 100 + ".csv"  # 3 bytes a character: 304 bytes, over most file systems' 255


@pytest.mark.parametrize(
    ("uploaded", "stored"),
    [
        ("***", "upload.csv"),
        ("", "upload.csv"),
        (None, "upload.csv"),
        (".", "upload.csv"),
        ("..", "upload.csv"),
        ("...", "upload.csv"),
        ("\x00", "upload.csv"),
        (" - ", "upload.csv"),
        ("../../x", "x"),
        ("../../../etc/passwd", "passwd"),
        ("..\\..\\evil.csv", "....evil.csv"),
        ("a\x00b.csv", "ab.csv"),
        ("my cars.csv", "my_cars.csv"),
        ("Citroën 2CV.csv", "Citroën_2CV.csv"),
        (LONG, LONG[-100:]),
        (WIDE, WIDE[-36:]),  # 32 characters and `.csv`: 100 bytes
    ],
)
def test_any_upload_name_is_stored_under_a_safe_one(uploaded, stored):
    """Issue #22: `***` (nothing left once made safe) was a 400: Django's
    get_valid_filename raises rather than returning "", so the fallback never ran."""
    source = store_upload(ContentFile(b"title\nA\n", name=uploaded))

    name = source.removeprefix("upload:")
    assert re.fullmatch(r"imports/[0-9a-f]{32}/[^/]+", name), name
    assert name.rsplit("/", 1)[1] == stored
    assert len(stored.encode()) <= 100
    assert upload_storage().open(name).read() == b"title\nA\n"


@pytest.mark.parametrize("filename", ["***", "../../x", WIDE, "\x00.csv"])
def test_the_import_page_takes_a_file_whatever_its_name(admin_client, filename):
    upload = SimpleUploadedFile("cars.csv", b"id,title\n1,Alpha\n", content_type="text/csv")
    upload.name = filename  # as a browser may send it; Django's parser keeps what it prints

    response = admin_client.post(IMPORT_CSV, {"file": upload})

    assert response.status_code == 302, response.content[:300]
    job = ImportJob.objects.get()
    assert (job.status, job.counts["created"]) == ("succeeded", 1), job.error
    assert re.fullmatch(r"upload:imports/[0-9a-f]{32}/[^/]{1,100}", job.source), job.source


def test_a_job_run_elsewhere_deletes_its_upload_when_it_ends():
    """With REDIS_URL a worker runs the job: the admin cannot delete the file then."""
    source = store_upload(SimpleUploadedFile("x.csv", b"title\nA\n"))
    job = create_job(source=source, trigger=ImportJob.Trigger.ADMIN)

    with contextlib.suppress(SourceError):
        execute_job(job.pk)  # what the Celery task runs

    job.refresh_from_db()
    assert job.status in ("succeeded", "failed")
    assert not upload_exists(source)


def test_an_upload_over_the_size_cap_is_refused_and_starts_nothing(admin_client, settings):
    settings.CARS_CSV_MAX_BYTES = 100
    upload = SimpleUploadedFile("big.csv", csv_bytes([["1", "x" * 200, "", ""]]))

    response = admin_client.post(IMPORT_CSV, {"file": upload})

    assert response.status_code == 200
    assert "over the limit of 100\xa0bytes (CARS_CSV_MAX_BYTES)" in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not default_storage.exists("imports")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "Give either a URL or a file"),
        ({"url": "ftp://example.com/cars.csv"}, "Enter a valid URL."),
        ({"url": "file:///etc/passwd"}, "Enter a valid URL."),
        ({"url": "/etc/passwd"}, "Enter a valid URL."),
    ],
)
def test_the_import_form_refuses_what_is_not_one_http_url_or_one_file(admin_client, data, error):
    response = admin_client.post(IMPORT_CSV, data)

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not ImportJob.objects.exists()


def test_the_import_form_refuses_a_url_and_a_file_at_once(admin_client):
    upload = SimpleUploadedFile("a.csv", csv_bytes([["1", "A", "", ""]]))

    response = admin_client.post(IMPORT_CSV, {"url": "https://example.com/a.csv", "file": upload})

    assert "Give either a URL or a file" in response.content.decode()
    assert not ImportJob.objects.exists()


def test_a_csv_url_that_fails_shows_a_failed_job_and_changes_no_car(admin_client, http_server):
    response = admin_client.post(IMPORT_CSV, {"url": http_server.url("/nowhere.csv")}, follow=True)

    job = ImportJob.objects.get()
    assert job.status == "failed" and "404" in job.error
    [message] = messages_of(response)
    assert message.startswith(f"Import #{job.pk} failed: cannot read ")
    assert not Car.objects.exists()


def test_staff_without_the_add_permission_cannot_import(client, django_user_model):
    staff = django_user_model.objects.create_user("sam", password="pw", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    client.force_login(staff)

    assert f'href="{IMPORT_CSV}"' not in client.get(JOBS).content.decode()
    assert client.get(IMPORT_CSV).status_code == 403
    assert client.post(IMPORT_CSV, {"url": "https://example.com/a.csv"}).status_code == 403
    assert not ImportJob.objects.exists()


def test_pruning_from_the_admin_needs_the_permission_to_delete_cars(client, django_user_model):
    staff = django_user_model.objects.create_user("pat", password="pw", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_importjob", "view_importjob"])
    )
    client.force_login(staff)

    response = client.post(IMPORT_CSV, {"url": "https://example.com/a.csv", "prune": "on"})

    assert response.status_code == 200
    assert "Deleting cars needs the cars.delete_car permission." in response.content.decode()
    assert not ImportJob.objects.exists()


def test_anonymous_visitors_are_sent_to_the_login_page(client):
    response = client.get(IMPORT_CSV)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_with_a_broker_the_import_is_queued_and_its_page_follows_it(
    admin_client, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from imports import tasks

    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    queued: list[tuple] = []
    monkeypatch.setattr(tasks.run_import_job, "delay", lambda *args: queued.append(args))
    upload = SimpleUploadedFile("a.csv", csv_bytes([["1", "A", "", ""]]))

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(IMPORT_CSV, {"file": upload}, follow=True)

    job = ImportJob.objects.get()
    assert queued == [(job.pk,)]
    assert messages_of(response) == [f"Import #{job.pk} is queued: this page follows it."]
    assert upload_exists(job.source), "kept for the worker that will run the job"
    assert '<meta http-equiv="refresh" content="2">' in response.content.decode()


@pytest.mark.parametrize(
    ("status", "refreshes"),
    [("queued", True), ("running", True), ("succeeded", False), ("failed", False)],
)
def test_a_job_page_reloads_itself_until_the_job_ends(admin_client, status, refreshes):
    job = create_job(source="https://example.com/cars.csv")
    ImportJob.objects.filter(pk=job.pk).update(status=status)

    html = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()

    assert ('http-equiv="refresh"' in html) is refreshes
    assert ("The page reloads every 2 seconds" in html) is refreshes


def test_a_running_job_shows_its_progress_in_the_list_and_on_its_page(admin_client):
    job = create_job(source="https://example.com/cars.csv")
    ImportJob.objects.filter(pk=job.pk).update(status="running", images_done=5, images_total=12)

    page = admin_client.get(f"{JOBS}{job.pk}/change/").content.decode()
    listing = admin_client.get(JOBS).content.decode()

    for html in (page, listing):
        assert '<progress value="5" max="12"></progress> 5 / 12' in html


# --------------------------------------------------------------------------- upload: sources


def policy(max_bytes: int = 1_000_000) -> FetchPolicy:
    return FetchPolicy(timeout=1, max_bytes=max_bytes, allow_private=True, retries=0, backoff=0)


def test_an_upload_source_reads_back_what_was_saved():
    source = store_upload(SimpleUploadedFile("x.csv", b"title\nA\n"))

    opened = open_source(source, policy=policy())

    assert source.startswith("upload:imports/")
    assert opened.stream.read() == b"title\nA\n"
    assert opened.base_dir is None


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("upload:imports/0123/missing.csv", "no such file"),
        ("upload:images/image_1/a.jpg", "not an uploaded import file"),
        ("upload:imports/../images/a.jpg", "not an uploaded import file"),
    ],
)
def test_an_upload_source_that_cannot_be_read_is_a_source_error(source, words):
    with pytest.raises(SourceError, match=words):
        open_source(source, policy=policy())


def test_an_upload_source_over_the_cap_is_a_source_error():
    source = store_upload(SimpleUploadedFile("x.csv", b"title\n" + b"A\n" * 100))

    with pytest.raises(SourceError, match="over CARS_CSV_MAX_BYTES"):
        open_source(source, policy=policy(max_bytes=50))

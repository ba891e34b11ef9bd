"""The imports API (SPEC §6) and the import jobs admin (SPEC §7), end to end.

A real CSV and real images served over real sockets by a local HTTP server, the real
database, real renditions on disk. Without a broker (CELERY_BROKER_URL) a job runs inside
the POST, so the answer already tells how it went; with one it is handed to Celery after
commit.
"""

import base64
import io
import re
from datetime import timedelta, timezone

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from rest_framework.authtoken.models import Token

from cars.models import Car
from imports.heartbeat import worker_id
from imports.lifecycle import acquire, create_job
from imports.models import ImportJob, SourceLock
from tests.support.catalog import csv_bytes
from tests.support.images import jpeg_bytes, png_bytes

pytestmark = pytest.mark.django_db

JOB_KEYS = {
    "id",
    "source",
    "status",
    "created_at",
    "started_at",
    "finished_at",
    "counts",
    "rejected_rows",
    "image_failures",
    "error",
    "progress",
    "pictures",
    "problems",
    "map",
    "encoding",
    "feed",
}
ZERO_COUNTS = dict.fromkeys(
    ("created", "updated", "unchanged", "deleted", "rejected", "images_ok", "images_failed"), 0
)
_LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')


@pytest.fixture
def catalog_url(http_server) -> str:
    """A CSV on the local server: two good images, one missing, one rejected row."""
    http_server.add("/img/a.jpg", jpeg_bytes(800, 600), headers={"Content-Type": "image/jpeg"})
    http_server.add("/img/b.png", png_bytes(300, 200), headers={"Content-Type": "image/png"})
    http_server.add(
        "/cars.csv",
        csv_bytes(
            [
                ["1", "Alpha", "First car", http_server.url("/img/a.jpg")],
                ["2", "Beta", "Second car", http_server.url("/img/b.png")],
                ["3", "", "No title", ""],
                ["4", "Delta", "Image gone", http_server.url("/img/gone.jpg")],
                ["5", "Epsilon", "No image", ""],
            ]
        ),
        headers={"Content-Type": "text/csv"},
    )
    return http_server.url("/cars.csv")


def post(client: Client, body, **headers):
    return client.post("/api/imports/", body, content_type="application/json", headers=headers)


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in _LINK.findall(response.get("Link", ""))}


@pytest.fixture
def staff_token(admin_user) -> str:
    return Token.objects.create(user=admin_user).key


@pytest.fixture
def member(django_user_model):
    return django_user_model.objects.create_user("member", password="pw", is_staff=False)


# --------------------------------------------------------------------------- POST, inline


def test_staff_post_runs_the_import_inline_and_answers_202_with_the_finished_job(
    admin_client, admin_user, catalog_url, http_server
):
    response = post(admin_client, {"source": catalog_url, "prune": False})

    assert response.status_code == 202, response.content
    job = response.json()
    assert set(job) == JOB_KEYS
    assert response["Location"] == f"http://testserver/api/imports/{job['id']}/"
    assert job["source"] == catalog_url
    assert job["status"] == "succeeded"
    assert job["error"] == ""
    assert job["started_at"] and job["finished_at"]
    assert job["counts"] == {
        **ZERO_COUNTS,
        "created": 4,
        "rejected": 1,
        "images_ok": 2,
        "images_failed": 1,
    }
    assert job["rejected_rows"] == [
        {"line": 4, "reason": "missing_title", "message": "title is empty"}
    ]
    [failure] = job["image_failures"]
    assert set(failure) == {"line", "key", "url", "reason", "message"}
    assert failure["line"] == 5
    assert failure["key"] == "4"
    assert failure["url"] == http_server.url("/img/gone.jpg")
    assert failure["reason"] == "http_error"
    assert "404" in failure["message"]
    # Three distinct references, all done; two cars got a picture this import stored.
    assert job["progress"] == {"done": 3, "total": 3}
    assert job["pictures"] == {"new": 2, "shared": 0}
    assert job["problems"] == {
        "rejected_rows": {"stored": 1, "not_stored": 0},
        "image_failures": {"stored": 1, "not_stored": 0},
        "max_stored": 10_000,
        "truncated": False,
        "url": f"http://testserver/api/imports/{job['id']}/errors/",
        "csv_url": f"http://testserver/api/imports/{job['id']}/errors.csv",
    }

    assert admin_client.get(response["Location"]).json() == job
    assert sorted(Car.objects.values_list("title", flat=True)) == [
        "Alpha",
        "Beta",
        "Delta",
        "Epsilon",
    ]
    assert Car.objects.get(external_key="1").image
    stored = ImportJob.objects.get(pk=job["id"])
    assert (stored.trigger, stored.created_by, stored.prune) == ("api", admin_user, False)


def test_token_auth_needs_no_session_nor_csrf_and_passes_the_options(
    client, admin_user, staff_token, catalog_url
):
    call_command("import_csv", catalog_url, "--no-progress", stdout=io.StringIO())
    Car.objects.create(external_key="old", title="Not in the CSV any more")

    response = post(
        client,
        {"source": catalog_url, "prune": True, "refresh_images": True},
        authorization=f"Token {staff_token}",
    )

    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] == "succeeded"
    assert job["counts"]["deleted"] == 1
    assert job["counts"]["images_ok"] == 2  # refreshed: fetched again though unchanged
    assert not Car.objects.filter(external_key="old").exists()
    stored = ImportJob.objects.get(pk=job["id"])
    assert (stored.created_by, stored.prune, stored.refresh_images) == (admin_user, True, True)


def test_a_csv_url_answering_404_makes_a_failed_job_and_changes_no_car(admin_client, http_server):
    url = http_server.url("/nowhere.csv")

    response = post(admin_client, {"source": url})

    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "failed"
    assert url in job["error"] and "404" in job["error"]
    assert job["counts"] == ZERO_COUNTS
    assert job["rejected_rows"] == [] and job["image_failures"] == []
    assert job["finished_at"]
    assert not Car.objects.exists()
    assert admin_client.get(f"/api/imports/{job['id']}/").json()["status"] == "failed"


def test_a_source_already_being_imported_fails_the_job_with_the_reason(admin_client, catalog_url):
    holder = create_job(source=catalog_url)  # another import, alive, holds this source
    ImportJob.objects.filter(pk=holder.pk).update(status=ImportJob.Status.RUNNING)
    holder.refresh_from_db()
    acquire(holder)

    job = post(admin_client, {"source": catalog_url}).json()

    assert job["id"] != holder.pk
    assert job["status"] == "failed"
    assert "another import" in job["error"]
    assert not Car.objects.exists()
    holder.refresh_from_db()
    assert (holder.status, holder.error) == (ImportJob.Status.RUNNING, ""), "left running"
    assert SourceLock.objects.get().job_id == holder.pk
    assert SourceLock.objects.get().worker == worker_id()


# --------------------------------------------------------------------------- POST, queued


def test_with_a_broker_the_job_is_queued_and_enqueued_after_commit_with_its_id(
    admin_client, catalog_url, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from imports import tasks

    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/0"
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks.run_import_job, "delay", lambda *args: enqueued.append(args))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post(admin_client, {"source": catalog_url})
        assert enqueued == []  # nothing reaches the broker before the job row is committed

    assert response.status_code == 202
    job = response.json()
    assert job["status"] == "queued"
    assert job["started_at"] is None and job["finished_at"] is None
    assert job["counts"] == ZERO_COUNTS
    assert job["progress"] == {"done": 0, "total": 0}
    assert job["pictures"] == {"new": 0, "shared": 0}
    assert len(callbacks) == 1
    assert enqueued == [(job["id"],)]
    assert type(enqueued[0][0]) is int
    assert not Car.objects.exists()
    assert admin_client.get(response["Location"]).json()["status"] == "queued"


# --------------------------------------------------------------------------- who may ask


@pytest.mark.parametrize(
    "method, path",
    [("post", "/api/imports/"), ("get", "/api/imports/"), ("get", "/api/imports/1/")],
)
def test_anonymous_requests_answer_401_with_a_token_challenge(client, method, path):
    response = getattr(client, method)(path, {"source": "http://example.com/cars.csv"})

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response["Content-Type"] == "application/json"
    assert "detail" in response.json()
    assert not ImportJob.objects.exists()


def test_a_wrong_token_answers_401(client):
    response = client.get("/api/imports/", headers={"authorization": "Token nope"})

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid token."}


def test_logged_in_non_staff_users_are_refused_with_403(client, member):
    client.force_login(member)
    token = Token.objects.create(user=member).key

    assert post(client, {"source": "http://example.com/cars.csv"}).status_code == 403
    assert client.get("/api/imports/").status_code == 403
    client.logout()
    assert post(Client(), {"source": "http://example.com/cars.csv"}).status_code == 401
    by_token = Client().get("/api/imports/", headers={"authorization": f"Token {token}"})
    assert by_token.status_code == 403
    assert not ImportJob.objects.exists()


def staff_with(django_user_model, *codenames: str):
    user = django_user_model.objects.create_user("staffer", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def test_staff_without_the_admins_permissions_can_neither_import_nor_read(
    client, django_user_model, catalog_url
):
    """Security review #15, item 2: staff status alone started an import (and a prune)."""
    Car.objects.create(external_key="kept", title="Must survive")
    client.force_login(staff_with(django_user_model))

    for body in ({"source": catalog_url}, {"source": catalog_url, "prune": True}):
        response = post(client, body)
        assert response.status_code == 403, response.content
        assert response["Content-Type"] == "application/json"
    assert client.get("/api/imports/").status_code == 403
    assert not ImportJob.objects.exists()
    assert Car.objects.filter(external_key="kept").exists()


def test_pruning_through_the_api_also_needs_the_permission_to_delete_cars(
    client, django_user_model, catalog_url
):
    Car.objects.create(external_key="kept", title="Must survive")
    user = staff_with(django_user_model, "add_importjob", "view_importjob")
    token = Token.objects.create(user=user).key
    auth = {"authorization": f"Token {token}"}

    refused = post(client, {"source": catalog_url, "prune": True}, **auth)

    assert refused.status_code == 403
    assert "cars.delete_car" in refused.json()["detail"]
    assert not ImportJob.objects.exists()
    assert Car.objects.filter(external_key="kept").exists()
    assert post(client, {"source": catalog_url}, **auth).status_code == 202  # no prune: fine
    assert client.get("/api/imports/", headers=auth).status_code == 200
    user.user_permissions.add(Permission.objects.get(codename="delete_car"))

    assert post(client, {"source": catalog_url, "prune": True}, **auth).status_code == 202
    assert not Car.objects.filter(external_key="kept").exists()


def test_a_staff_session_without_a_csrf_token_cannot_post(admin_user, catalog_url):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(admin_user)

    response = post(browser, {"source": catalog_url})

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not ImportJob.objects.exists()
    assert browser.get("/api/imports/").status_code == 200  # reads need no CSRF token


# --------------------------------------------------------------------------- bad bodies


@pytest.mark.parametrize(
    "body, field, words",
    [
        ({}, "source", "required"),
        ({"prune": True}, "source", "required"),
        ({"source": ""}, "source", "blank"),
        ({"source": "not a url"}, "source", "local path is not accepted"),
        ({"source": "/srv/data/cars.csv"}, "source", "local path is not accepted"),
        ({"source": "sample/cars.csv"}, "source", "local path is not accepted"),
        ({"source": "file:///etc/passwd"}, "source", "local path is not accepted"),
        ({"source": "C:\\data\\cars.csv"}, "source", "local path is not accepted"),
        ({"source": "ftp://example.com/cars.csv"}, "source", "http(s) URL, not ftp"),
        ({"source": "http://"}, "source", "with a host"),
        ({"source": ["http://example.com/c.csv"]}, "source", "valid string"),
        ({"source": "http://example.com/c.csv", "prune": "yes"}, "prune", "true or false"),
        ({"source": "http://example.com/c.csv", "prune": 1}, "prune", "true or false"),
        ({"source": "http://example.com/c.csv", "prune": None}, "prune", "null"),
        ({"source": "http://example.com/c.csv", "refresh_images": "x"}, "refresh_images", "true"),
        ({"source": "http://example.com/c.csv", "dry_run": True}, "dry_run", "Unknown field"),
    ],
)
def test_bad_bodies_answer_400_naming_the_field(admin_client, body, field, words):
    response = post(admin_client, body)

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    data = response.json()
    assert field in data["errors"]
    assert words in data["errors"][field][0]
    assert data["detail"].startswith(f"{field}: ")
    assert words in data["detail"]
    assert not ImportJob.objects.exists()


@pytest.mark.parametrize(
    "content, content_type, status",
    [
        ("{not json", "application/json", 400),
        ('["http://example.com/cars.csv"]', "application/json", 400),
        ("source=http://example.com/cars.csv", "application/x-www-form-urlencoded", 415),
    ],
)
def test_bodies_that_are_not_a_json_object_are_refused(admin_client, content, content_type, status):
    response = admin_client.post("/api/imports/", content, content_type=content_type)

    assert response.status_code == status
    assert response.json()["detail"]
    assert not ImportJob.objects.exists()


def test_other_writes_answer_405(admin_client):
    job = create_job(source="http://example.com/cars.csv")
    for method, path in [
        ("put", "/api/imports/"),
        ("patch", "/api/imports/"),
        ("delete", "/api/imports/"),
        ("post", f"/api/imports/{job.pk}/"),
        ("put", f"/api/imports/{job.pk}/"),
        ("delete", f"/api/imports/{job.pk}/"),
    ]:
        response = getattr(admin_client, method)(path, {}, content_type="application/json")
        assert response.status_code == 405, (method, path)
        assert response.json()["detail"]
    assert ImportJob.objects.count() == 1


def test_an_unknown_job_is_a_json_404(admin_client):
    for path in ("/api/imports/999/", "/api/imports/abc/"):
        response = admin_client.get(path)
        assert response.status_code == 404
        assert response.json()["detail"]


# --------------------------------------------------------------------------- GET list


def test_the_list_is_paginated_newest_first_with_link_and_total(admin_client):
    jobs = [create_job(source=f"http://example.com/{n}.csv") for n in range(5)]
    newest_first = [job.pk for job in reversed(jobs)]

    first = admin_client.get("/api/imports/?limit=2")

    assert first.status_code == 200
    assert first["X-Total-Count"] == "5"
    page = first.json()
    assert [job["id"] for job in page] == newest_first[:2]
    assert all(set(job) == JOB_KEYS for job in page)
    assert page[0]["status"] == "queued" and page[0]["counts"] == ZERO_COUNTS
    assert page[0]["progress"] == {"done": 0, "total": 0}
    assert page[0]["pictures"] == {"new": 0, "shared": 0}
    assert "prev" not in links(first)

    second = admin_client.get(links(first)["next"])
    assert [job["id"] for job in second.json()] == newest_first[2:4]
    third = admin_client.get(links(second)["next"])
    assert [job["id"] for job in third.json()] == newest_first[4:]
    assert "next" not in links(third)
    back = admin_client.get(links(third)["prev"])
    assert [job["id"] for job in back.json()] == newest_first[2:4]

    by_offset = admin_client.get("/api/imports/?limit=2&offset=3")
    assert [job["id"] for job in by_offset.json()] == newest_first[3:5]
    assert "offset=1" in links(by_offset)["prev"]

    everything = admin_client.get("/api/imports/").json()
    assert [job["id"] for job in everything] == newest_first


@pytest.mark.parametrize(
    "query",
    [
        "limit=0",
        "limit=x",
        "offset=-1",
        "cursor=%%%",
        "cursor=WzEsMiwwXQ",
        "cursor=WyJ4IiwyLDBd",
        "limit=5000",
    ],
)
def test_bad_paging_parameters_answer_400(admin_client, query):
    create_job(source="http://example.com/cars.csv")

    response = admin_client.get(f"/api/imports/?{query}")

    assert response.status_code == 400
    assert response.json()["detail"]


def cursor(token: str) -> str:
    return base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "token",
    [
        "[" * 50_000 + "]" * 50_000,  # past the JSON parser's recursion limit
        '["2024-05-01T12:00:00+00:00", 1, ' + "[" * 50_000 + "]" * 50_000 + "]",
        '["2024-05-01T12:00:00+00:00\\u0000", 1, 0]',  # PostgreSQL text holds no NUL
        '["\\ud800", 1, 0]',  # a lone surrogate: no driver encodes it
        '["2024-05-01T12:00:00", 1, 0]',  # no offset: which instant?
        '["0001-01-01T00:00:00+01:00", 1, 0]',  # before year 1 in UTC
    ],
)
def test_a_cursor_the_database_would_refuse_is_a_400_not_a_500(admin_client, token):
    """Issue #22: the imports list shares the cars' cursor (core.pagination)."""
    create_job(source="http://example.com/cars.csv")

    response = admin_client.get("/api/imports/", {"cursor": cursor(token)})

    assert response.status_code == 400, response.content[:200]
    assert response.json()["detail"]


def test_a_cursor_time_in_another_offset_is_a_400(admin_client):
    """PostgreSQL refuses offsets beyond ±15:59 (a 500 before issue #22); every cursor
    this API writes is in UTC, so one in another offset is not ours."""
    jobs = [create_job(source=f"http://example.com/{n}.csv") for n in range(3)]
    newest = ImportJob.objects.get(pk=jobs[-1].pk)
    far_west = newest.created_at.astimezone(timezone(-timedelta(hours=23, minutes=59)))

    pages = [
        admin_client.get("/api/imports/", {"cursor": cursor(f'["{moment}", {newest.pk}, 0]')})
        for moment in (newest.created_at.isoformat(), far_west.isoformat())
    ]

    assert [page.status_code for page in pages] == [200, 400]
    assert [job["id"] for job in pages[0].json()] == [jobs[1].pk, jobs[0].pk]


def test_the_import_csv_command_records_a_job_the_api_lists(admin_client, catalog_url):
    post(admin_client, {"source": catalog_url})
    call_command("import_csv", catalog_url, "--no-progress", stdout=io.StringIO())

    listed = admin_client.get("/api/imports/").json()

    assert len(listed) == 2
    newest = listed[0]
    assert newest["source"] == catalog_url
    assert newest["status"] == "succeeded"
    assert newest["counts"] == {**ZERO_COUNTS, "unchanged": 4, "rejected": 1, "images_failed": 1}
    assert ImportJob.objects.get(pk=newest["id"]).trigger == "command"


# --------------------------------------------------------------------------- admin


def test_the_admin_lists_jobs_and_shows_one_read_only_with_its_problems(
    admin_client, catalog_url, http_server
):
    job_id = post(admin_client, {"source": catalog_url}).json()["id"]
    failed_id = post(admin_client, {"source": http_server.url("/nowhere.csv")}).json()["id"]

    changelist = admin_client.get("/admin/imports/importjob/")
    assert changelist.status_code == 200
    html = changelist.content.decode()
    assert catalog_url in html
    assert (
        "created 4, updated 0, unchanged 0, deleted 0, rejected 1 rows; images: 2 ok, 1 failed"
    ) in html
    assert admin_client.get("/admin/imports/importjob/?status__exact=failed").status_code == 200
    searched = admin_client.get("/admin/imports/importjob/", {"q": "nowhere"}).content.decode()
    assert "nowhere.csv" in searched and "/cars.csv" not in searched

    page = admin_client.get(f"/admin/imports/importjob/{job_id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<table>" in html
    assert "<td>4</td><td>missing_title</td><td>title is empty</td>" in html
    assert f"<td>{http_server.url('/img/gone.jpg')}</td><td>http_error</td>" in html
    assert 'name="_save"' not in html  # read-only: nothing to save

    failed = admin_client.get(f"/admin/imports/importjob/{failed_id}/change/").content.decode()
    assert "404" in failed and "nowhere.csv" in failed

    assert admin_client.get("/admin/imports/importjob/add/").status_code == 403
    response = admin_client.post(
        f"/admin/imports/importjob/{job_id}/change/", {"source": "http://evil.example/x.csv"}
    )
    assert response.status_code == 403
    assert ImportJob.objects.get(pk=job_id).source == catalog_url


def test_the_admin_escapes_what_the_csv_said(admin_client, http_server):
    http_server.add("/x.csv", csv_bytes([["<b>k</b>", "T", "", "<script>x</script>"]]))
    job_id = post(admin_client, {"source": http_server.url("/x.csv")}).json()["id"]

    html = admin_client.get(f"/admin/imports/importjob/{job_id}/change/").content.decode()

    assert "&lt;b&gt;k&lt;/b&gt;" in html
    assert "<script>x</script>" not in html


# --------------------------------------------------------------------------- schema


def test_the_openapi_schema_describes_the_imports_endpoints(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()

    create = schema["paths"]["/api/imports/"]["post"]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ImportRequest"
    )
    assert "Location" in create["responses"]["202"]["headers"]
    assert {"401", "403", "400"} <= set(create["responses"])
    assert {"tokenAuth", "cookieAuth"} <= {name for item in create["security"] for name in item}
    assert "get" in schema["paths"]["/api/imports/{id}/"]
    components = schema["components"]["schemas"]
    job = components["ImportJob"]["properties"]
    assert set(job) == JOB_KEYS
    for field, keys in {"progress": {"done", "total"}, "pictures": {"new", "shared"}}.items():
        ref = job[field].get("$ref") or job[field]["allOf"][0]["$ref"]
        described = components[ref.rsplit("/", 1)[1]]
        assert set(described["properties"]) == keys, field
        assert all(described["properties"][k]["type"] == "integer" for k in keys)

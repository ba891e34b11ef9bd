"""Logs, request ids and metrics, as operators see them."""

import json
import logging
import os
import re
from pathlib import Path

import httpx
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext

from imports.lifecycle import finish_job
from imports.models import ImportJob
from imports.services import run_import
from imports.totals import totals
from tests.support.project import ROOT, gunicorn, manage, migrate, run
from tests.support.stack import free_port


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_", "LOG_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="x7!k2-production-secret-key-long-enough-for-check-deploy-0123456789abcdef",
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
    )
    env.update(extra)
    return env


def json_lines(stderr: str) -> list[dict]:
    lines = [line for line in stderr.splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # every line must parse


def test_a_request_in_production_logs_one_json_line_with_its_request_id(tmp_path):
    env = production_env(tmp_path, STATIC_ROOT=str(tmp_path / "static"))
    collected = manage(env, "collectstatic", "--noinput", "-v0")
    assert collected.returncode == 0, collected.stderr
    assert list((tmp_path / "static").rglob("*.css.gz")), "compressed, hashed static files"
    assert (tmp_path / "static" / "staticfiles.json").exists()
    script = (
        "import django; django.setup(); from django.test import Client;"
        "r = Client().get('/healthz', secure=True, HTTP_X_REQUEST_ID='req-42');"
        "print(r.status_code, r.headers['X-Request-ID'])"
    )
    result = run(["-c", script], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "req-42"]
    lines = json_lines(result.stderr)
    requests = [line for line in lines if line.get("path") == "/healthz"]
    assert len(requests) == 1, lines
    (line,) = requests
    assert line["request_id"] == "req-42"
    assert line["status"] == 200 and line["method"] == "GET"
    assert isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO" and "time" in line


def test_an_import_logs_its_job_id_and_counts_as_json(tmp_path):
    env = production_env(tmp_path, CARS_ALLOW_PRIVATE_URLS="true")
    migrate(env)
    result = manage(env, "import_csv", "--no-progress")
    assert result.returncode == 0, result.stderr
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (job,) = [line for line in logged if "job_id" in line]
    assert job["counts"]["created"] == 25 and job["counts"]["images_failed"] == 4
    assert job["source"].endswith("sample/cars.csv")


@pytest.mark.django_db
def test_responses_carry_a_request_id(client):
    given = client.get("/healthz", HTTP_X_REQUEST_ID="abc-123")
    made = client.get("/healthz")
    assert given.headers["X-Request-ID"] == "abc-123"
    assert len(made.headers["X-Request-ID"]) >= 16


@pytest.mark.django_db
@pytest.mark.parametrize("sent", ["two words", "x" * 201, "tab\there", "caf\u00e9"])
def test_an_unusable_request_id_is_replaced_by_a_new_one(client, sent):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=sent)
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


@pytest.mark.django_db
def test_lines_logged_during_a_request_carry_its_id_and_later_lines_do_not(client, caplog):
    from django_guid import get_guid
    from django_guid.log_filters import CorrelationId

    caplog.handler.addFilter(CorrelationId())  # as the console handler has it (LOGGING)
    caplog.set_level(logging.INFO, logger="image_backend.requests")
    client.get("/api/cars/", HTTP_X_REQUEST_ID="trace-7")

    (line,) = [r for r in caplog.records if r.name == "image_backend.requests"]
    assert line.correlation_id == "trace-7"
    assert (line.method, line.path, line.status) == ("GET", "/api/cars/", 200)
    assert get_guid() is None  # reset once the response is made


@pytest.mark.django_db
def test_metrics_expose_requests_latency_imports_and_failures_by_reason(client):
    from imports.lifecycle import create_job
    from imports.runner import run_job as execute_job

    job = create_job(source=str(ROOT / "sample" / "cars.csv"))
    execute_job(job.pk)
    client.get("/api/cars/")

    body = client.get("/metrics").content.decode()

    assert 'image_backend_import_jobs{status="succeeded"} 1.0' in body
    assert 'image_backend_import_rows_total{outcome="created"} 25.0' in body
    for reason in ("invalid_image", "unreachable", "blocked_path", "unsupported_scheme"):
        assert f'image_backend_import_image_failures_total{{reason="{reason}"}} 1.0' in body
        assert f'image_backend_car_image_errors{{reason="{reason}"}} 1.0' in body
    assert 'image_backend_cars{status="ready"} 20.0' in body
    assert "django_http_requests_latency_seconds_by_view_method_bucket" in body
    assert "django_http_responses_total_by_status_total" in body


@pytest.mark.django_db
def test_cached_pages_and_304s_are_counted_like_any_response(client):
    """A cached page and a 304 are answered inside the metrics middlewares: each request
    counts once, under its status, view and method, with its latency."""
    from prometheus_client import REGISTRY

    def counted(status: str) -> float:
        labels = {"status": status, "view": "<unnamed view>", "method": "GET"}
        name = "django_http_responses_total_by_status_view_method_total"
        return REGISTRY.get_sample_value(name, labels) or 0.0

    def latencies() -> float:
        labels = {"view": "<unnamed view>", "method": "GET"}
        name = "django_http_requests_latency_seconds_by_view_method_count"
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = counted("200"), counted("304"), latencies()
    etag = client.get("/api/cars/?limit=2")["ETag"]  # stored (a miss: the view is named)
    client.get("/api/cars/?limit=2")  # a hit
    client.get("/api/cars/?limit=2")  # a hit
    assert client.get("/api/cars/?limit=2", HTTP_IF_NONE_MATCH=etag).status_code == 304

    assert counted("200") - before[0] == 2
    assert counted("304") - before[1] == 1
    assert latencies() - before[2] == 3


def test_run_import_without_a_job_is_not_counted(db, client):
    run_import(source=str(ROOT / "sample" / "cars.csv"))
    body = client.get("/metrics").content.decode()
    assert "image_backend_import_rows_total{" not in body
    assert 'image_backend_car_image_errors{reason="invalid_image"} 1.0' in body


def test_production_redirects_plain_http_api_requests_even_when_cached(tmp_path):
    env = production_env(tmp_path, STATIC_ROOT=str(tmp_path / "static"))
    migrate(env)
    script = (
        "import django; django.setup(); from django.test import Client; c = Client();"
        "a = c.get('/api/cars/', secure=True); b = c.get('/api/cars/', secure=True);"
        "d = c.get('/api/cars/');"
        "print(a.status_code, b.status_code, b['ETag'] == a['ETag'], d.status_code, d['Location'])"
    )
    result = run(["-c", script], env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200", "200", "True", "301", "https://testserver/api/cars/"]


# --- security review #15, item 5: /metrics public through the Ingress, and costly -----------


def test_metrics_answer_only_on_the_metrics_port_whatever_the_host_header(tmp_path):
    """The Ingress routes / to the public port: /metrics must not answer there. The port
    is the connection's, not the Host header's (which the client writes)."""
    public, scrape = free_port(), free_port()
    env = production_env(
        tmp_path, ALLOWED_HOSTS="127.0.0.1", LOG_LEVEL="WARNING", CARS_METRICS_PORT=str(scrape)
    )
    migrate(env)
    with (
        gunicorn(env, tmp_path / "gunicorn.log", ports=[public, scrape]) as (outside, inside),
        httpx.Client(trust_env=False, timeout=10) as http,
    ):
        https = {"X-Forwarded-Proto": "https"}
        assert http.get(f"{outside}/metrics", headers=https).status_code == 404
        spoofed = {**https, "Host": f"127.0.0.1:{scrape}"}
        assert http.get(f"{outside}/metrics", headers=spoofed).status_code == 404
        assert http.get(f"{outside}/api/cars/", headers=https).status_code == 200

        scraped = http.get(f"{inside}/metrics")
        assert scraped.status_code == 200
        assert "image_backend_import_jobs" in scraped.text


def _succeeded_job(failures: int) -> ImportJob:
    """A job as the importer leaves it, closed the way the importer closes one: its
    failures by reason, the first few listed."""
    job = ImportJob.objects.create(
        source="https://example.com/cars.csv",
        status=ImportJob.Status.RUNNING,
        counts={"created": failures, "images_ok": 0, "images_failed": failures},
        image_failure_reasons={"http_error": failures},
        image_failures=[
            {
                "line": n + 2,
                "key": str(n),
                "url": f"https://x/{n}.jpg",
                "reason": "http_error",
                "message": "HTTP 404",
            }
            for n in range(min(failures, 100))
        ],
    )
    finish_job(job, ImportJob.Status.SUCCEEDED)
    return job


WRITES = ("INSERT", "UPDATE", "DELETE")


@pytest.mark.django_db
def test_a_scrape_reads_a_few_small_rows_and_writes_nothing(client):
    """A scrape read every failure of every succeeded job: 3 jobs x 200k failures took
    1.5 s of database work per scrape. Then a scrape added each new job to running
    totals: a GET that wrote. Now a job adds itself to the totals as it closes."""
    for _ in range(3):
        _succeeded_job(2000)

    first = client.get("/metrics").content.decode()
    assert 'image_backend_import_image_failures_total{reason="http_error"} 6000.0' in first
    assert 'image_backend_import_rows_total{outcome="images_failed"} 6000.0' in first

    with CaptureQueriesContext(connection) as scrape:
        again = client.get("/metrics").content.decode()
    assert 'image_backend_import_image_failures_total{reason="http_error"} 6000.0' in again
    read = [q["sql"] for q in scrape.captured_queries]
    assert not [sql for sql in read if "image_failure" in sql], read
    assert not [sql for sql in read if sql.lstrip().upper().startswith(WRITES)], read
    assert len(read) <= 6, read

    _succeeded_job(10)  # a new job counts once, from the moment it closes
    body = client.get("/metrics").content.decode()
    assert 'image_backend_import_image_failures_total{reason="http_error"} 6010.0' in body
    assert 'image_backend_import_image_failures_total{reason="http_error"} 6010.0' in (
        client.get("/metrics").content.decode()
    )


@pytest.mark.django_db(transaction=True)
def test_the_totals_move_to_imports_and_jobs_no_scrape_counted_are_counted_once():
    before = [("core", "0001_initial"), ("imports", "0006_feed_options")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old = executor.loader.project_state(before).apps
    Job = old.get_model("imports", "ImportJob")
    Total, Counted = old.get_model("core", "ImportTotal"), old.get_model("core", "CountedJob")
    counted = Job.objects.create(
        source="a.csv", status="succeeded", counts={"created": 7},
        image_failure_reasons={"http_error": 2},
    )  # fmt: skip
    Counted.objects.create(job_id=counted.pk)
    Total.objects.create(metric="rows", label="created", value=7)
    Total.objects.create(metric="failures", label="http_error", value=2)
    Job.objects.create(
        source="b.csv", status="succeeded", counts={"created": 3, "images_failed": 1},
        image_failure_reasons={"http_error": 1},
    )  # fmt: skip
    Job.objects.create(source="c.csv", status="failed", counts={"created": 100})

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert totals() == {
        "rows": {"created": 10, "images_failed": 1},
        "failures": {"http_error": 3},
    }

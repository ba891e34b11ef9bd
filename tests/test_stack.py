"""Scale-out, for real: web + Celery worker + beat processes on Redis and PostgreSQL.

Skipped (with the reason) on a machine without Redis; `.ci/run` sets REQUIRE_SERVICES=1
so that there they fail instead of skipping.
"""

import json
import os
import time
from pathlib import Path

import pytest

from tests.support.images import jpeg_bytes, photo_like
from tests.support.project import manage
from tests.support.stack import running_stack

pytestmark = pytest.mark.stack


def serve_catalog(http_server, extra_rows: str = "") -> str:
    http_server.add("/a.jpg", photo_like(1600, 1200, seed=3))
    http_server.add("/b.jpg", jpeg_bytes(800, 600))
    http_server.add("/broken.jpg", b"not an image")
    body = (
        "id,title,description,image\n"
        f"1,Alpha,Red and fast,{http_server.url('/a.jpg')}\n"
        f"2,Beta,Blue estate,{http_server.url('/b.jpg')}\n"
        f"3,Gamma,Shares an image,{http_server.url('/a.jpg')}\n"
        f"4,Delta,Broken image,{http_server.url('/broken.jpg')}\n"
        "5,Epsilon,No image,\n" + extra_rows
    )
    http_server.add("/cars.csv", body.encode(), headers={"ETag": f'"{hash(body)}"'})
    return http_server.url("/cars.csv")


def embedded_default(tmp_path: Path, source: str, paths: list[str]) -> dict[str, list]:
    """The same CSV through the laptop default (SQLite, no Redis, inline), read via the API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_", "REDIS"))}
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'embedded.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "embedded-media"),
        LOG_LEVEL="WARNING",
    )
    env.pop("DATABASE_URL_TEST", None)
    script = (
        "import json; from django.test import Client; c = Client();"
        f"print(json.dumps({{p: c.get(p).json() for p in {paths!r}}}))"
    )
    for args in (
        ["migrate", "-v0"],
        ["import_csv", source, "--no-progress"],
        ["shell", "-c", script],
    ):
        result = manage(env, *args, timeout=600)
        assert result.returncode == 0, result.stderr
    return json.loads(
        result.stdout.strip().splitlines()[-1].replace("http://testserver", "http://HOST")
    )


def without_timestamps(responses: dict) -> dict:
    """Two runs differ in when they happened, and in nothing else."""
    strip = ("created_at", "updated_at")
    return {
        path: [{k: v for k, v in c.items() if k not in strip} for c in body]
        if isinstance(body, list)
        else {k: v for k, v in body.items() if k not in strip}
        for path, body in responses.items()
    }


def test_a_queued_import_runs_on_a_worker_and_serves_what_the_embedded_default_serves(
    tmp_path, http_server
):
    source = serve_catalog(http_server)
    paths = ["/api/cars/", "/api/cars/web/", "/api/cars/mobile/", "/api/cars/web/1/"]
    expected = embedded_default(tmp_path, source, paths)

    with running_stack(tmp_path / "stack", {"CARS_SYNC_INTERVAL": "0"}, beat=False) as stack:
        out = stack.manage(
            "shell",
            "-c",
            "from imports.jobs import submit_job; from imports.lifecycle import create_job;"
            f"job = create_job(source={source!r}, trigger='api'); submit_job(job); print(job.pk)",
        )
        job_id = int(out.strip().splitlines()[-1])

        def finished():
            rows = stack.query(f"SELECT status FROM imports_importjob WHERE id = {job_id}")
            return rows and rows[0][0] in ("succeeded", "failed") and rows[0][0]

        assert stack.wait_for("the job to finish on the worker", finished) == "succeeded"
        assert "run_import_job" in stack.log("worker")
        actual = {path: stack.cars_json(path) for path in paths}
        media = Path(stack.env["MEDIA_ROOT"])
        renditions = list((media / "CACHE" / "images").rglob("*.jpg"))
        # Alpha and Gamma share a.jpg: 2 distinct pictures, each rendered once per platform.
        assert len(renditions) == 2 * 3, "2 pictures × 3 platforms rendered on the worker"

    assert without_timestamps(actual) == without_timestamps(expected)
    assert [car["image"] is None for car in actual["/api/cars/web/"]] == [
        False,
        False,
        False,
        True,
        True,
    ]


def test_beat_syncs_changes_within_two_intervals_and_ignores_an_unchanged_source(
    tmp_path, http_server
):
    interval = 2
    source = serve_catalog(http_server)
    env = {"CARS_SYNC_INTERVAL": str(interval), "CARS_CSV_SOURCE": source}
    with running_stack(tmp_path, env, beat=True) as stack:

        def total() -> int:
            response = stack.get("/api/cars/")
            return int(response.headers["X-Total-Count"]) if response.status_code == 200 else 0

        stack.wait_for("the first sync", lambda: total() == 5)
        serve_catalog(http_server, extra_rows="6,Zeta,Added later,\n")
        changed_at = time.monotonic()
        stack.wait_for("the change to show", lambda: total() == 6, timeout=60)
        lag = time.monotonic() - changed_at
        assert lag < 2 * interval + 10, f"change visible after {lag:.1f} s"

        # The rows show first; the job ends once its image chunks are done.
        stack.wait_for(
            "the sync's job to end",
            lambda: all(status in ("succeeded", "failed") for _, status, _, _ in stack.jobs()),
        )
        jobs_before = stack.jobs()
        requests_before = http_server.hits["/cars.csv"]
        time.sleep(3 * interval + 1)
        assert stack.jobs() == jobs_before, "an unchanged source creates no job"
        assert http_server.hits["/cars.csv"] >= requests_before + 2, "but it is still polled"
        conditional = http_server.headers("/cars.csv")[-1]
        assert conditional.get("If-None-Match"), "with a conditional request"
        assert all(trigger == "sync" for _, _, trigger, _ in jobs_before)
        assert all(status == "succeeded" for _, status, _, _ in jobs_before)


def test_a_queued_import_stores_every_picture_of_every_car_on_the_worker(tmp_path, http_server):
    """Several pictures per car through the queued path: chunks name each picture's place,
    the worker stores and renders each content once, the detail lists them in order."""
    urls = []
    for n, data in enumerate([photo_like(800, 600, seed=n) for n in range(1, 4)], start=1):
        http_server.add(f"/{n}.jpg", data)
        urls.append(http_server.url(f"/{n}.jpg"))
    http_server.add("/mirror/3.jpg", photo_like(800, 600, seed=3))
    body = (
        "id,title,images\n"
        f'1,Alpha,"{urls[0]},{urls[1]},{urls[2]}"\n'
        f'2,Beta,"{http_server.url("/mirror/3.jpg")},{urls[0]}"\n'
    )
    http_server.add("/cars.csv", body.encode())
    source = http_server.url("/cars.csv")

    with running_stack(tmp_path / "stack", {"CARS_IMAGE_CHUNK": "2"}, beat=False) as stack:
        out = stack.manage(
            "shell",
            "-c",
            "from imports.jobs import submit_job; from imports.lifecycle import create_job;"
            f"job = create_job(source={source!r}, trigger='api'); submit_job(job); print(job.pk)",
        )
        job_id = int(out.strip().splitlines()[-1])

        def finished():
            rows = stack.query(f"SELECT status FROM imports_importjob WHERE id = {job_id}")
            return rows and rows[0][0] in ("succeeded", "failed") and rows[0][0]

        assert stack.wait_for("the job to finish on the worker", finished) == "succeeded"
        [(counts,)] = stack.query(f"SELECT counts FROM imports_importjob WHERE id = {job_id}")
        counts = json.loads(counts) if isinstance(counts, str) else counts
        assert (counts["images_ok"], counts["images_failed"]) == (5, 0)
        further = stack.query(
            "SELECT c.external_key, p.position, p.status FROM cars_carpicture p "
            "JOIN cars_car c ON c.id = p.car_id ORDER BY c.external_key, p.position"
        )
        assert further == [("1", 1, "ready"), ("1", 2, "ready"), ("2", 1, "ready")]
        alpha = stack.cars_json("/api/cars/1/")
        beta = stack.cars_json("/api/cars/2/")
        media = Path(stack.env["MEDIA_ROOT"])
        renditions = list((media / "CACHE" / "images").rglob("*.jpg"))
        assert len(renditions) == 3 * 3, "3 contents × 3 platforms, whatever the URLs"

    assert [p["source_url"] for p in alpha["pictures"]] == urls
    assert alpha["pictures"][0]["images"] == alpha["images"]
    assert all(p["error"] is None and p["images"]["web"] for p in alpha["pictures"])
    assert beta["pictures"][0]["images"] == alpha["pictures"][2]["images"], "same bytes, same files"
    assert beta["pictures"][1]["images"] == alpha["pictures"][0]["images"]

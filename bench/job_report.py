"""The size of an import job's report as the API serves it (issue #22).

    .venv/bin/python bench/job_report.py [--rows 500000]

Imports a CSV of ROWS rows that are all rejected (`missing_title`; 4.4 MB for 500k rows)
with `manage.py import_csv` on a fresh SQLite site, then serves it with gunicorn (one
sync worker, development settings, DEBUG off) and GETs the job's detail and the job list
with a staff token: bytes, seconds, and the worker's peak RSS (VmHWM) after each; then
the first page of its problems and their CSV download.
"""

import argparse
import json
import signal
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    BIN,
    OUT,
    ROOT,
    Site,
    free_port,
    http_get,
    manage,
    migrate,
    server_env,
    wait_http,
)

TOKEN = """
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from imports.models import ImportJob
user = get_user_model().objects.create_superuser("bench", password="bench-password-1")
print(Token.objects.create(user=user).key, ImportJob.objects.latest("pk").pk)
"""


def bad_rows_csv(path: Path, rows: int) -> Path:
    """`rows` records with an id and an empty title: every one is rejected."""
    with path.open("w") as fh:
        fh.write("id,title\n")
        fh.writelines(f"{n:06d},\n" for n in range(1, rows + 1))
    return path


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    rows = parser.parse_args().rows
    site = Site.fresh("job_report")
    migrate(site)
    csv_path = bad_rows_csv(site.folder / "bad.csv", rows)
    imported = manage(site, "import_csv", str(csv_path), "--no-progress", log_name="import")
    print(f"CSV {csv_path.stat().st_size / 1e6:.1f} MB, {rows} rejected rows")
    print(f"import_csv: {imported.seconds:.1f} s, peak RSS {imported.peak_rss_mb:.0f} MB")
    token, job_id = manage(site, "shell", "-c", TOKEN, log_name="token").stdout.split()[-2:]
    headers = {"Authorization": f"Token {token}"}

    port = free_port()
    cmd = [str(BIN / "gunicorn"), "config.wsgi", "--workers", "1", "--bind", f"127.0.0.1:{port}"]
    log = (OUT / "logs" / "job_report-gunicorn.log").open("w")
    server = subprocess.Popen(cmd, cwd=ROOT, env=server_env(site), stdout=log, stderr=log)
    try:
        wait_http(port, "/healthz", proc=server)
        [worker] = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        print(f"gunicorn worker at rest: peak RSS {peak_rss_mb(int(worker)):.0f} MB")
        for path in (f"/api/imports/{job_id}/", "/api/imports/"):
            status, _, body, seconds = http_get(port, path, headers, timeout=300)
            assert status == 200, (status, body[:300])
            rejected = json.loads(body)
            rejected = rejected[0] if isinstance(rejected, list) else rejected
            print(
                f"GET {path}: {len(body) / 1e6:.3f} MB in {seconds:.3f} s "
                f"({len(rejected['rejected_rows'])} rejected rows inline), "
                f"worker peak RSS {peak_rss_mb(int(worker)):.0f} MB"
            )
        # Every stored problem (since #22), where the server has them.
        for path in (
            f"/api/imports/{job_id}/errors/?limit=1000",
            f"/api/imports/{job_id}/errors.csv",
        ):
            status, _, body, seconds = http_get(port, path, headers, timeout=300)
            if status == 200:
                print(
                    f"GET {path}: {len(body) / 1e6:.3f} MB in {seconds:.3f} s, "
                    f"worker peak RSS {peak_rss_mb(int(worker)):.0f} MB"
                )
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    main()

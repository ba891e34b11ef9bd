"""A bounded load test (tests/support/load.py): wrk, 64 connections, against gunicorn on
127.0.0.1 while an import runs. 20 seconds here; ``make load`` runs 5 minutes
(LOAD_SECONDS=300) and prints the figures.

Asserts: zero errors (no connect/read/write error, no timeout, no status other than 200
and 304), the import succeeds under the load, and no memory growth in the gunicorn
workers between the start and the end of the run.
"""

import os
import shutil

import pytest

from tests.support.load import run_load
from tests.support.stack import required

pytestmark = [pytest.mark.load, pytest.mark.stack]

SECONDS = int(os.environ.get("LOAD_SECONDS", "20"))
CONNECTIONS = int(os.environ.get("LOAD_CONNECTIONS", "64"))
# Allowed growth of the workers' summed RSS over the run: what warming the last code
# paths and caches may take, not a leak (which grows with the number of requests).
RSS_SLACK_KIB = 24 * 1024


def test_the_api_under_load_while_an_import_runs(tmp_path):
    if shutil.which("wrk") is None:
        message = "wrk is not installed (apt-get install wrk; `make load` installs it)"
        if required():
            pytest.fail(f"{message}, and REQUIRE_SERVICES=1")
        pytest.skip(message)

    result = run_load(tmp_path, seconds=SECONDS, connections=CONNECTIONS)
    print("\n" + result.report())

    assert result.error_count == 0, result.report()
    assert set(result.statuses) <= {"200", "304"}, result.report()
    assert result.statuses.get("304", 0) > 0, "the conditional requests were answered 304"
    assert result.import_summary == (
        "created 200, updated 428, unchanged 2572, deleted 0, rejected 0 rows; "
        "images: 210 ok, 0 failed"
    )
    assert set(result.rss_end_kib) == set(result.rss_start_kib), "a gunicorn worker died"
    start, end = sum(result.rss_start_kib.values()), sum(result.rss_end_kib.values())
    assert end <= start + RSS_SLACK_KIB, result.report()

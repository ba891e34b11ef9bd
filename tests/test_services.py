"""`make services` (SPEC §7): once the servers answer, running it again changes nothing.

The first run (installing and starting everything) is what `.ci/run` does on a fresh
machine; this checks the second: every server is found answering and left alone.
"""

import subprocess
import time

import pytest

from tests.support.project import ROOT
from tests.support.stack import (
    missing,
    postgres_available,
    rabbitmq_available,
    redis_available,
)

pytestmark = pytest.mark.stack


def test_make_services_again_leaves_every_running_server_alone():
    for name, available in (
        ("PostgreSQL", postgres_available),
        ("Redis", redis_available),
        ("RabbitMQ", rabbitmq_available),
    ):
        if not available():
            missing(name)

    started = time.monotonic()
    result = subprocess.run(
        ["bash", str(ROOT / "services" / "up.sh")],
        env={"SERVICES": "postgres redis rabbitmq", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - started

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == ["postgres", "redis", "rabbitmq"]
    assert all(
        line.endswith("on 127.0.0.1:" + port + " (already running)")
        for line, port in zip(lines, ("5432", "6379", "5672"), strict=True)
    ), lines
    assert elapsed < 10, f"a second run took {elapsed:.1f}s"

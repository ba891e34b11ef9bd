"""Pytest fixtures built on the test support code.

Use them from a test module (or a conftest.py) with
`from tests.support.fixtures import http_server  # noqa: F401`, or list this module in
`pytest_plugins = ["tests.support.fixtures"]`.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.httpserver import LocalHTTPServer

ROOT = Path(__file__).resolve().parent.parent.parent


def project_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a project process (manage.py, gunicorn) on its own SQLite file
    and media folder under `folder`: development settings, nothing from this process's
    DJANGO_*/CARS_* variables, no Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_"))}
    env.pop("REDIS_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.development",
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        MEDIA_ROOT=str(folder / "media"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def dev_env(tmp_path) -> dict[str, str]:
    return project_env(tmp_path)


@pytest.fixture
def migrated_env(dev_env) -> dict[str, str]:
    migrate(dev_env)
    return dev_env


@pytest.fixture
def http_server() -> Iterator[LocalHTTPServer]:
    """A running local HTTP server with no routes yet, stopped after the test."""
    with LocalHTTPServer() as server:
        yield server

"""Pytest fixtures built on the test support code.

Use them from a test module (or a conftest.py) with
`from tests.support.fixtures import http_server  # noqa: F401`, or list this module in
`pytest_plugins = ["tests.support.fixtures"]`.
"""

from collections.abc import Iterator

import pytest

from tests.support.httpserver import LocalHTTPServer
from tests.support.project import migrate, project_env


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

"""The engines search tests run on: the database, and a real OpenSearch node.

`search_engine` parametrizes a test over both. The OpenSearch run uses the node of
`make services` (services/opensearch, `TEST_SEARCH_URL` to point elsewhere) under an
index alias of this test run's own (`test-<random>`), built empty for each test and
deleted after it; it is skipped when no node answers, unless REQUIRE_SERVICES=1. It is a
transactional test: writes reach the engine after their transaction commits, as in
production (a test inside one never-committed transaction would never index anything).
"""

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from django.conf import settings
from opensearchpy import OpenSearch

from tests.support.stack import missing

OPENSEARCH_URL = os.environ.get("TEST_SEARCH_URL", "http://127.0.0.1:9200")
RUN_INDEX = f"test-{secrets.token_hex(4)}"
ENGINES = ["database", pytest.param("opensearch", marks=pytest.mark.django_db(transaction=True))]


def opensearch_available() -> bool:
    try:
        return httpx.get(OPENSEARCH_URL, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def require_opensearch() -> None:
    if not opensearch_available():
        missing(f"OpenSearch ({OPENSEARCH_URL}, `make services`)")


def delete_indices(alias: str) -> None:
    """Every index of `alias`: its rebuilds (`alias-<timestamp>`) and whatever it names."""
    engine = OpenSearch(hosts=[OPENSEARCH_URL])
    engine.indices.delete(index=f"{alias}-*", expand_wildcards="open,closed")
    if engine.indices.exists(index=alias):
        engine.indices.delete(index=list(engine.indices.get(index=alias)))


def index_existing_cars() -> None:
    """For fixtures that write cars around `cars.services` (bulk_create): index them as
    `search_index --rebuild` would. Nothing when the database answers searches."""
    if settings.SEARCH_URL:
        from cars.search_engine import rebuild

        rebuild()


@pytest.fixture(scope="session")
def search_run_index() -> Iterator[str]:
    """This run's alias; whatever a test left behind is deleted at the end of the run."""
    yield RUN_INDEX
    if opensearch_available():
        delete_indices(RUN_INDEX)


@pytest.fixture(params=ENGINES)
def search_engine(request, settings, search_run_index) -> Iterator[str]:
    """The engine's name: "database" (SEARCH_URL unset), or "opensearch" (this run's
    index, fresh)."""
    if request.param == "database":
        settings.SEARCH_URL = ""
        yield "database"
        return
    with _fresh_index(settings, search_run_index):
        yield "opensearch"


@pytest.fixture
def opensearch(settings, search_run_index, transactional_db) -> Iterator[OpenSearch]:
    """OpenSearch only (tests of the engine itself): a client of the node, and this
    run's index, fresh, behind SEARCH_INDEX."""
    with _fresh_index(settings, search_run_index):
        yield OpenSearch(hosts=[OPENSEARCH_URL])


@contextmanager
def _fresh_index(settings, alias: str) -> Iterator[None]:
    require_opensearch()
    settings.SEARCH_URL = OPENSEARCH_URL
    settings.SEARCH_INDEX = alias
    from cars.search_engine import rebuild

    rebuild()  # empty, or with the cars a fixture set up before this one
    try:
        yield
    finally:
        delete_indices(alias)

"""Shared fixtures: every test gets its own media folder and an empty cache."""

import pytest
from django.core.cache import cache

import tests.support.fuzzing  # noqa: F401  (loads the Hypothesis profile: HYPOTHESIS_PROFILE)

pytest_plugins = ["tests.support.fixtures", "tests.support.search"]


@pytest.fixture(autouse=True)
def _isolated_media(request, tmp_path):
    """Real files on disk (media, uploaded CSVs), in folders of the test's own (only for
    Django-backed tests)."""
    if "django_db_setup" not in request.fixturenames and not _uses_django(request):
        yield None
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = str(tmp_path / "media")
    uploads = settings.STORAGES["imports"]
    settings.STORAGES = {
        **settings.STORAGES,
        "imports": {**uploads, "OPTIONS": {**uploads["OPTIONS"], "location": tmp_path / "uploads"}},
    }
    cache.clear()
    yield tmp_path / "media"
    cache.clear()


def _uses_django(request) -> bool:
    return any(name in request.fixturenames for name in ("db", "transactional_db", "client"))


# The marks of the tests that take tens of seconds each (a million cars, real processes,
# the bench harness): run first, so that in a parallel run (`make test`: pytest-xdist,
# worksteal) none of them starts last while the other workers sit idle.
SLOW_FIRST = ("million", "stack", "load", "bench")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The slow tests first, each group in the order pytest (and pytest-django) chose."""
    items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in SLOW_FIRST))

"""Liveness and readiness probes (SPEC §7): /healthz and /readyz."""

from django.core.cache.backends.base import BaseCache
from django.core.files.storage import default_storage
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections
from django.test import override_settings


class BrokenCache(BaseCache):
    """A cache whose server is gone: every operation raises, like a dead Redis."""

    def __init__(self, location, params):
        super().__init__(params)

    def _down(self, *args, **kwargs):
        raise ConnectionError("cache server unavailable")

    add = get = set = delete = touch = clear = has_key = incr = _down
    get_many = set_many = delete_many = _down


BROKEN_CACHES = {"default": {"BACKEND": "tests.test_health.BrokenCache"}}
# The production configuration (django-redis, exceptions ignored) with Redis down: a port
# nothing listens on, so every call is refused at once.
DEAD_REDIS_CACHES = {
    "default": {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {
            "IGNORE_EXCEPTIONS": True,
            "SOCKET_CONNECT_TIMEOUT": 0.5,
            "SOCKET_TIMEOUT": 0.5,
        },
    }
}


def test_healthz_answers_200_without_touching_the_database(client):
    # No `db` fixture: any database access here would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_readyz_answers_200_naming_every_check(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "storage"}
    assert "max-age=0" in response["Cache-Control"]


def test_readyz_is_503_naming_the_cache_when_the_cache_raises(client, db):
    with override_settings(CACHES=BROKEN_CACHES):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["cache"]
    assert client.get("/readyz").status_code == 200, "healthy again once the cache is back"


def test_readyz_is_503_naming_the_cache_when_redis_is_unreachable(client, db):
    with override_settings(CACHES=DEAD_REDIS_CACHES):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["cache"]


def test_readyz_is_503_naming_the_database_when_it_fails(client, db, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    # The database backend refuses to give a cursor (restored by monkeypatch).
    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS].__class__, "cursor", unavailable)
    response = client.get("/readyz")
    monkeypatch.undo()

    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failed": ["database"]}
    assert client.get("/readyz").status_code == 200


def test_readyz_is_503_naming_the_storage_when_it_fails(client, db, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OSError("storage unavailable")

    monkeypatch.setattr(default_storage.__class__, "exists", unavailable)
    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["failed"] == ["storage"]


def test_readyz_names_every_failing_check(client, db, monkeypatch):
    def unavailable(*args, **kwargs):
        raise OperationalError("database is gone")

    monkeypatch.setattr(connections[DEFAULT_DB_ALIAS].__class__, "cursor", unavailable)
    with override_settings(CACHES=BROKEN_CACHES):
        response = client.get("/readyz")
    monkeypatch.undo()

    assert response.status_code == 503
    assert response.json()["failed"] == ["database", "cache"]

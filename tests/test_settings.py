"""Every settings module, loaded as a deployment loads it: in a fresh interpreter with the
environment that module requires, so no module can quietly drop a value base sets."""

import json
import os

import pytest

from tests.support.project import run

MODULES = {
    "config.settings.test": {},
    "config.settings.development": {},
    "config.settings.production": {
        "SECRET_KEY": "a-long-random-production-secret-for-this-test-only",
        "ALLOWED_HOSTS": "cars.example.com",
    },
    "config.settings.staging": {
        "SECRET_KEY": "a-long-random-staging-secret-for-this-test-only",
        "ALLOWED_HOSTS": "staging.example.com",
    },
}
DATABASE_URLS = {
    "sqlite": "sqlite:////tmp/settings-test.sqlite3",
    "postgres": "postgres://user:secret@db.example.com:5432/cars",
}
READ = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({"db": {k: v for k, v in db.items() if k != "TEST"}, "debug": settings.DEBUG}))
"""


def _settings_of(module: str, database_url: str, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_"))}
    for name in ("DATABASE_URL", "CONN_MAX_AGE", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"):
        env.pop(name, None)
    env.update(DJANGO_SETTINGS_MODULE=module, DATABASE_URL=database_url, **extra)
    result = run(["-c", "import django; django.setup()\n" + READ], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("database", sorted(DATABASE_URLS))
@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_settings_module_keeps_the_connection_settings_of_base(module, database):
    loaded = _settings_of(module, DATABASE_URLS[database], **MODULES[module])
    db = loaded["db"]

    assert db["CONN_HEALTH_CHECKS"] is True
    assert db["CONN_MAX_AGE"] == 60
    if database == "sqlite":
        assert db["ENGINE"] == "django.db.backends.sqlite3"
        assert db["OPTIONS"]["transaction_mode"] == "IMMEDIATE"
        assert "journal_mode=WAL" in db["OPTIONS"]["init_command"]
    else:
        assert db["ENGINE"] == "django.db.backends.postgresql"
        assert (db["HOST"], db["NAME"], db["USER"]) == ("db.example.com", "cars", "user")
    if module.endswith(("production", "staging")):
        assert loaded["debug"] is False


@pytest.mark.parametrize("module", ["config.settings.production", "config.settings.staging"])
def test_conn_max_age_comes_from_the_environment_in_every_module(module):
    loaded = _settings_of(module, DATABASE_URLS["postgres"], CONN_MAX_AGE="5", **MODULES[module])

    assert (loaded["db"]["CONN_MAX_AGE"], loaded["db"]["CONN_HEALTH_CHECKS"]) == (5, True)

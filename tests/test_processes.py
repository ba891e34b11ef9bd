"""Behaviour only a real process shows: exit statuses, settings modules, environment.

Each test runs `manage.py` (or Python) in a subprocess with its own SQLite file and media
folder, exactly as a user or a deployment would.
"""

import json

import pytest

from tests.support.project import run


def test_import_csv_exit_statuses_and_summary_line(migrated_env, tmp_path):
    ok = run(["manage.py", "import_csv", "--no-progress"], migrated_env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip().splitlines()[-1] == (
        "created 25, updated 0, unchanged 0, deleted 0, rejected 3 rows; images: 20 ok, 4 failed"
    )

    missing = run(["manage.py", "import_csv", str(tmp_path / "none.csv")], migrated_env)
    assert missing.returncode == 1
    assert "no such file" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1, "one clear line"

    for bad_usage in (["--workers", "0"], ["--no-such-option"], ["a.csv", "b.csv"]):
        result = run(["manage.py", "import_csv", *bad_usage], migrated_env)
        assert result.returncode == 2, (bad_usage, result.stderr)


def test_a_platform_added_in_settings_gets_renditions_and_an_endpoint(migrated_env):
    platforms = {
        "default": {"processors": [["fit", 1920, 1920]], "format": "JPEG", "quality": 90},
        "thumb": {"processors": [["fill", 120, 120]], "format": "JPEG", "quality": 70},
    }
    env = {**migrated_env, "CARS_PLATFORMS": json.dumps(platforms)}
    imported = run(["manage.py", "import_csv", "--no-progress"], env)
    assert imported.returncode == 0, imported.stderr

    script = (
        "from django.test import Client; import json; c = Client();"
        "r = c.get('/api/cars/thumb/1/'); print(json.dumps([r.status_code, r.json()]));"
        "print(c.get('/api/cars/web/').status_code)"
    )
    result = run(["manage.py", "shell", "-c", script], env)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.strip().splitlines()[-2:]
    status, car = json.loads(first)
    assert status == 200
    assert set(car["images"]) == {"default", "thumb"}
    assert (car["images"]["thumb"]["width"], car["images"]["thumb"]["height"]) == (120, 120)
    assert car["image"] == car["images"]["thumb"]["url"]
    assert second == "404", "a platform removed from settings is gone"


PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "SECRET_KEY": "x7!k2-production-secret-key-long-enough-for-check-deploy-0123456789abcdef",
    "ALLOWED_HOSTS": "cars.example.com",
    "DATABASE_URL": "sqlite:////tmp/unused.sqlite3",
}


@pytest.mark.parametrize("module", ["config.settings.production", "config.settings.staging"])
@pytest.mark.parametrize("missing", ["SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL"])
def test_production_refuses_to_start_without_required_variables(dev_env, module, missing):
    env = {**dev_env, **PRODUCTION, "DJANGO_SETTINGS_MODULE": module}
    del env[missing]
    for args in (["-c", "import django; django.setup()"], ["-c", "import config.wsgi"]):
        result = run(args, env)
        assert result.returncode != 0
        assert "ImproperlyConfigured" in result.stderr
        assert f"Set the {missing} environment variable" in result.stderr


def test_production_with_s3_needs_a_private_bucket_for_uploads(dev_env):
    """Security review #15, item 3: uploads never share the public media bucket."""
    env = {**dev_env, **PRODUCTION, "USE_S3": "true", "AWS_STORAGE_BUCKET_NAME": "media"}
    result = run(["-c", "import django; django.setup()"], env)
    assert result.returncode != 0
    assert "Set the AWS_IMPORTS_BUCKET_NAME environment variable" in result.stderr
    env["AWS_IMPORTS_BUCKET_NAME"] = "uploads"
    result = run(["-c", "import django; django.setup()"], env)
    assert result.returncode == 0, result.stderr


def test_production_passes_check_deploy_without_warnings(dev_env):
    env = {**dev_env, **PRODUCTION, "DEBUG": "true"}  # DEBUG can never be on in production
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_platform_added_later_is_filled_in_by_render_images(migrated_env):
    imported = run(["manage.py", "import_csv", "--no-progress"], migrated_env)
    assert imported.returncode == 0, imported.stderr
    platforms = {
        "default": {"processors": [["fit", 1920, 1920]], "format": "JPEG", "quality": 90},
        "web": {"processors": [["fit", 1280, 960]], "format": "JPEG", "quality": 85},
        "mobile": {"processors": [["fit", 640, 480]], "format": "JPEG", "quality": 80},
        "thumb": {"processors": [["fill", 100, 100]], "format": "JPEG", "quality": 70},
    }
    env = {**migrated_env, "CARS_PLATFORMS": json.dumps(platforms)}
    script = (
        "from django.test import Client; import json;"
        "print(json.dumps(Client().get('/api/cars/1/').json()['images']))"
    )

    pictures = (
        "from cars.models import Picture; import json;"
        "print(json.dumps([Picture.objects.count(),"
        " sum('thumb' in p.renditions for p in Picture.objects.all())]))"
    )

    def counts() -> list[int]:
        return json.loads(run(["manage.py", "shell", "-c", pictures], env).stdout.splitlines()[-1])

    before = json.loads(run(["manage.py", "shell", "-c", script], env).stdout.splitlines()[-1])
    assert counts() == [20, 0], "the sample's 20 images are 20 distinct pictures, none has thumb"
    rendered = run(["manage.py", "render_images"], env)
    after = json.loads(run(["manage.py", "shell", "-c", script], env).stdout.splitlines()[-1])
    again = run(["manage.py", "render_images"], env)

    assert before["thumb"] is None, "not rendered yet: reported as null"
    assert rendered.stdout.strip() == "rendered 20 pictures"
    assert counts() == [20, 20]
    assert (after["thumb"]["width"], after["thumb"]["height"]) == (100, 100)
    assert after["web"] == before["web"], "existing renditions keep their names"
    assert again.stdout.strip() == "rendered 0 pictures", "nothing left to do"


def test_the_wsgi_module_loads_every_url_but_opens_no_database_connection(dev_env):
    script = (
        "import sys, config.wsgi; from django.db import connections;"
        "assert connections['default'].connection is None, 'connected before fork';"
        "assert 'cars.api.views' in sys.modules and 'gallery.views' in sys.modules;"
        "print('ok')"
    )
    result = run(["-c", script], dev_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"

"""What a feed does not say for itself (SPEC §3, §4): `--map`, `--encoding`, `--no-images`,
the same `"map"` in the imports API and the admin form, kept by a synced source; and the
encoding and mapping stated on stderr, in the report and on the job."""

import json

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from rest_framework.authtoken.models import Token

from cars.models import Car
from imports.models import ImportJob
from imports.sync import sync_source
from tests.support.images import jpeg_bytes
from tests.support.project import run

DROM = "company;mark;year;price;photo\nЛада;Веста;2019;950000;{image}\nKia;Rio;2020;1100000;\n"


@pytest.fixture
def drom_server(http_server):
    """A drom.ru-style feed in Windows-1251 whose title is three columns."""
    http_server.add("/car.jpg", jpeg_bytes(120, 90), headers={"Content-Type": "image/jpeg"})
    body = DROM.format(image=http_server.url("/car.jpg")).encode("cp1251")
    http_server.add("/drom.csv", body, headers={"ETag": '"v1"'})
    return http_server


def test_the_command_takes_a_template_and_states_encoding_and_mapping(
    drom_server, migrated_env, tmp_path
):
    source = drom_server.url("/drom.csv")
    report = tmp_path / "report.json"
    result = run(
        ["manage.py", "import_csv", source, "--no-progress", "--report", str(report),
         "--map", "title={company} {mark} {year}"],
        migrated_env,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "created 2, updated 0, unchanged 0, deleted 0, rejected 0 rows; images: 1 ok, 0 failed"
    )
    err = result.stderr.splitlines()
    assert err[0] == "encoding: cp1251"
    assert "mapping: title <- {company} {mark} {year}" in err
    assert "mapping: image <- photo" in err  # recognised by its values
    data = json.loads(report.read_text())
    assert data["encoding"] == "cp1251"
    assert data["mapping"]["title"] == "{company} {mark} {year}"
    assert data["mapping"]["attributes"] == ["price"]

    shown = run(
        ["manage.py", "shell", "-c",
         "from cars.models import Car; print(sorted(Car.objects.values_list('title', flat=True)))"],
        migrated_env,
    )  # fmt: skip
    assert shown.stdout.strip().splitlines()[-1] == "['Kia Rio 2020', 'Лада Веста 2019']"


def test_a_dry_run_without_images_checks_mapping_and_rows_and_fetches_nothing(
    drom_server, migrated_env
):
    result = run(
        ["manage.py", "import_csv", drom_server.url("/drom.csv"), "--no-progress",
         "--dry-run", "--no-images", "--map", "title={company} {mark}"],
        migrated_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1].startswith("created 2, updated 0")
    assert drom_server.hits["/car.jpg"] == 0


@pytest.mark.parametrize(
    "args",
    [
        [""],
        ["  "],
        ["--map", "price=Preis"],
        ["--map", "title"],
        ["--map", "title="],
        ["--no-images"],  # only with --dry-run
    ],
)
def test_bad_usage_of_the_feed_options_exits_2(args, migrated_env):
    result = run(["manage.py", "import_csv", *args, "--no-progress"], migrated_env)
    assert result.returncode == 2, (args, result.stderr)


def test_a_feed_without_pictures_says_so_loudly(migrated_env, tmp_path):
    source = tmp_path / "cars.csv"
    source.write_text("title,price,link\nGolf,100,https://shop.example/golf\n")
    report = tmp_path / "report.json"
    result = run(
        ["manage.py", "import_csv", str(source), "--no-progress", "--report", str(report)],
        migrated_env,
    )
    assert result.returncode == 0, result.stderr
    assert "warning: no image column:" in result.stderr
    assert "use --map image=COLUMN" in result.stderr
    assert any("no image column" in w for w in json.loads(report.read_text())["warnings"])


@pytest.mark.django_db
def test_the_imports_api_and_the_admin_take_the_same_map(drom_server):
    staff = User.objects.create_user("staff", password="x" * 16, is_staff=True)
    wanted = ["add_importjob", "view_importjob"]
    staff.user_permissions.add(*Permission.objects.filter(codename__in=wanted))
    token = Token.objects.create(user=staff)
    client = Client(headers={"Authorization": f"Token {token.key}"})
    body = {"source": drom_server.url("/drom.csv"), "map": {"title": "{company} {mark}"}}

    response = client.post("/api/imports/", body, content_type="application/json")

    assert response.status_code == 202, response.content
    job = response.json()
    assert job["map"] == {"title": "{company} {mark}"}
    assert job["feed"]["encoding"] == "cp1251"
    assert job["feed"]["mapping"]["title"] == "{company} {mark}"
    assert set(Car.objects.values_list("title", flat=True)) == {"Лада Веста", "Kia Rio"}

    refused = client.post(
        "/api/imports/",
        {"source": drom_server.url("/drom.csv"), "map": {"price": "x"}},
        content_type="application/json",
    )
    assert refused.status_code == 400 and "map" in refused.json()["errors"]

    admin = Client()
    admin.force_login(User.objects.create_superuser("admin", password="y" * 16))
    page = admin.post(
        "/admin/imports/importjob/import-csv/",
        {"url": drom_server.url("/drom.csv"), "map": "title={mark} {year}\n", "encoding": ""},
    )
    assert page.status_code == 302, page.content.decode()[:2000]
    assert ImportJob.objects.latest("id").column_map == {"title": "{mark} {year}"}
    assert set(Car.objects.values_list("title", flat=True)) == {"Веста 2019", "Rio 2020"}
    bad = admin.post(
        "/admin/imports/importjob/import-csv/",
        {"url": drom_server.url("/drom.csv"), "map": "colour=x", "encoding": "nope"},
    )
    assert bad.status_code == 200
    assert "the field is one of" in bad.content.decode()
    assert "Unknown encoding" in bad.content.decode()


@pytest.mark.django_db
def test_a_synced_source_keeps_its_mapping(drom_server, settings):
    source = drom_server.url("/drom.csv")
    settings.CARS_CSV_SOURCE = source
    ImportJob.objects.create(
        source=source, status="succeeded", column_map={"title": "{company} {mark}"}
    )

    job = sync_source()

    assert job is not None and job.status == "succeeded", job and job.error
    assert job.column_map == {"title": "{company} {mark}"}
    assert set(Car.objects.values_list("title", flat=True)) == {"Лада Веста", "Kia Rio"}

"""Security checks that no other test file proves (SECURITY.md lists them all), and the
regression tests of the hardening fixes.

The production checks run the real settings module in a subprocess (production refuses
to import without its variables), with secrets of the test's own making, and look for
them in everything the process says: response bodies, headers, and log lines.
"""

import io
import json
import os
import secrets
from pathlib import Path

import httpx
import pytest

from imports.csv_reader import CsvReader, CsvSourceError
from tests.support.project import gunicorn, manage, migrate

ERROR_SCRIPT = r"""
import json
from unittest import mock

from django.test import Client

import cars.api.views as views

client = Client(raise_request_exception=False)
headers = {
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_AUTHORIZATION": "Token " + TOKEN,
    "HTTP_COOKIE": "sessionid=" + SESSION,
}
out = {}
with mock.patch.object(views, "car_detail", side_effect=RuntimeError("the database exploded")):
    response = client.get("/api/cars/1/", **headers)
    out["500"] = [response.status_code, response["Content-Type"], response.content.decode()]
response = client.get("/api/nowhere/", **headers)
out["404"] = [response.status_code, response["Content-Type"], response.content.decode()]
print("RESULT " + json.dumps(out))
"""


def production_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_"))}
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY="sk-" + secrets.token_urlsafe(32),
        AWS_SECRET_ACCESS_KEY="aws-" + secrets.token_urlsafe(32),
        AWS_ACCESS_KEY_ID="AKIA" + secrets.token_hex(8).upper(),
        ALLOWED_HOSTS="testserver",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        LOG_LEVEL="DEBUG",  # the most a production log could ever say
    )
    return env


def test_a_500_in_production_answers_generic_json_and_logs_no_secret(tmp_path):
    env = production_env(tmp_path)
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    token, session = "tok-" + secrets.token_hex(16), "sess-" + secrets.token_hex(16)
    script = f"TOKEN = {token!r}\nSESSION = {session!r}\n" + ERROR_SCRIPT
    result = manage(env, "shell", "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    answers = json.loads(line.removeprefix("RESULT "))

    status, content_type, body = answers["500"]
    assert (status, content_type) == (500, "application/json")
    assert json.loads(body) == {"detail": "Internal server error."}
    status, content_type, body = answers["404"]
    assert (status, content_type, json.loads(body)) == (
        404,
        "application/json",
        {"detail": "Not found."},
    )

    logs = result.stderr
    assert "the database exploded" in logs, "the error itself is logged, for the operators"
    for line in logs.splitlines():
        if line.strip().startswith("{"):
            json.loads(line)  # production logs are one JSON object per line
    everything = result.stdout + logs
    for secret in (
        env["SECRET_KEY"],
        env["AWS_SECRET_ACCESS_KEY"],
        token,
        session,
    ):
        assert secret not in everything, "a secret reached a response or a log line"
    assert "Traceback" not in answers["500"][2]


def test_the_anonymous_rate_limit_answers_429_json(tmp_path):
    env = production_env(tmp_path)
    env["CARS_ANON_RATE"] = "3/min"
    env["LOG_LEVEL"] = "WARNING"
    assert manage(env, "migrate", "--noinput", "-v0").returncode == 0
    script = (
        "import json; from django.db import connection;"
        "from django.test import Client; from django.test.utils import CaptureQueriesContext;"
        "c = Client(); r = []; q = []\n"
        "for _ in range(5):\n"
        "    with CaptureQueriesContext(connection) as ctx:\n"
        "        r.append(c.get('/api/cars/', HTTP_X_FORWARDED_PROTO='https'))\n"
        "    q.append(sum('cars_car' in x['sql'] for x in ctx.captured_queries))\n"
        "s = Client(); s.cookies['sessionid'] = 'not-a-session'\n"
        "r.append(s.get('/api/cars/', HTTP_X_FORWARDED_PROTO='https'))\n"
        "print('RESULT ' + json.dumps([[x.status_code, x['Content-Type'], x.content.decode(),"
        " x.get('Retry-After')] for x in r])); print('QUERIES ' + json.dumps(q))"
    )
    result = manage(env, "shell", "-c", script)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT "))
    answers = json.loads(line.removeprefix("RESULT "))
    # A forged session cookie does not dodge the limit (the view's throttle judges it).
    assert [status for status, *_ in answers] == [200, 200, 200, 429, 429, 429]
    _, content_type, body, retry_after = answers[3]
    assert content_type == "application/json"
    assert "throttled" in json.loads(body)["detail"].lower()
    assert retry_after and int(retry_after) > 0
    # The limit does not turn the response cache off: the 2nd and 3rd pages are hits.
    queries = next(x for x in result.stdout.splitlines() if x.startswith("QUERIES "))
    queries = json.loads(queries.removeprefix("QUERIES "))
    assert queries[0] > 0 and queries[1:3] == [0, 0], queries


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/cars/car/", "/admin/imports/importjob/", "/admin/auth/user/"]
)
def test_the_admin_is_behind_the_login_page(client, django_user_model, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
    member = django_user_model.objects.create_user("member", password="pw-member-1")
    client.force_login(member)  # logged in, but not staff
    assert client.get(path)["Location"].startswith("/admin/login/")


# --- regression tests of the fixes ----------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        b'"id\nname",image\n',  # a quoted name spanning lines
        b'"' + b"n" * 100_000 + b'",image\n',  # a 100 kB name
    ],
)
def test_a_missing_title_error_is_one_short_line_whatever_the_header(header):
    """Fuzzing found the message repeating the header as written: newlines and all, and
    megabytes of it (stored on the job and printed by the command)."""
    with pytest.raises(CsvSourceError) as excinfo:
        CsvReader(io.BytesIO(header + b"x,y\n"))
    message = str(excinfo.value)
    assert message.startswith("no 'title' column (found: ")
    assert "\n" not in message and len(message) < 300


def test_fetchers_share_one_ssl_context_per_ca_setting(monkeypatch, tmp_path):
    """Building the CA bundle twice per Fetcher cost ~180 ms per import and per CSV
    download; one context per SSL_CERT_FILE / SSL_CERT_DIR value is shared now."""
    from imports.fetching import Fetcher, FetchPolicy
    from imports.fetching.guard import _shared_ssl_context

    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with Fetcher(FetchPolicy()) as first, Fetcher(FetchPolicy()) as second:
        contexts = {id(f._client._transport._pool._ssl_context) for f in (first, second)}
    assert contexts == {id(_shared_ssl_context())}

    import certifi

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    with Fetcher(FetchPolicy()) as third:
        assert id(third._client._transport._pool._ssl_context) not in contexts


# --- security review #15 -------------------------------------------------------------------


def test_rotating_x_forwarded_for_dodges_neither_the_api_nor_the_gallery_limit(tmp_path):
    """Item 4: with CARS_ANON_RATE=3/min, a client writing a new first X-Forwarded-For
    entry each time got 8 x 200 (DRF keyed on the whole header), and the gallery's search
    was never limited. Behind one proxy (CARS_NUM_PROXIES=1) the client is the entry that
    proxy appended, whatever the client wrote before it."""
    env = production_env(tmp_path)
    env.update(
        CARS_ANON_RATE="3/min",
        CARS_NUM_PROXIES="1",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        STATIC_ROOT=str(tmp_path / "static"),  # the gallery page needs the manifest
    )
    migrate(env)
    assert manage(env, "collectstatic", "--noinput", "-v0").returncode == 0
    with (
        gunicorn(env, tmp_path / "gunicorn.log") as (url,),
        httpx.Client(base_url=url, trust_env=False, timeout=10) as http,
    ):

        def statuses(path: str, proxy_saw: str) -> list[int]:
            return [
                http.get(
                    path,
                    headers={
                        "X-Forwarded-Proto": "https",
                        "X-Forwarded-For": f"198.51.100.{n}, {proxy_saw}",
                    },
                ).status_code
                for n in range(8)
            ]

        assert statuses("/api/cars/", "203.0.113.7") == [200] * 3 + [429] * 5
        assert statuses("/?search=car", "203.0.113.7") == [200] * 3 + [429] * 5
        # Another client, as the proxy saw it, has a budget of its own.
        assert statuses("/api/cars/", "203.0.113.8")[0] == 200


@pytest.mark.django_db
def test_without_a_proxy_the_peer_address_is_the_client_whatever_it_writes(client, settings):
    settings.CARS_ANON_RATE = "2/min"
    settings.CARS_NUM_PROXIES = 0
    answers = [
        client.get("/", {"search": "x"}, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}") for n in range(4)
    ]
    assert [a.status_code for a in answers] == [200, 200, 429, 429]
    assert int(answers[-1]["Retry-After"]) > 0


@pytest.mark.django_db
def test_the_admin_refuses_weak_passwords(admin_client):
    """Item 8: there were no password validators, so "admin" was a valid password."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    for weak in ("admin", "password", "12345678901234"):
        with pytest.raises(ValidationError):
            validate_password(weak)
    validate_password("correct horse battery staple")

    response = admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "newbie",
            "password1": "newbie2024",
            "password2": "newbie2024",
            "usable_password": "true",
        },
    )
    assert response.status_code == 200
    assert "This password is too short." in response.content.decode()


@pytest.mark.django_db
def test_failed_admin_logins_lock_the_client_out(client, settings, django_user_model):
    """Item 8: logins were never throttled. After CARS_LOGIN_FAILURE_LIMIT failures a
    client (as CARS_NUM_PROXIES says, whatever it writes first in X-Forwarded-For) is
    refused even with the right password; other clients still log in."""
    settings.CARS_NUM_PROXIES = 1
    django_user_model.objects.create_user("ops", password="right-password-1", is_staff=True)

    def log_in(password: str, proxy_saw: str, n: int = 0):
        return client.post(
            "/admin/login/?next=/admin/",
            {"username": "ops", "password": password},
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, {proxy_saw}",
        )

    for n in range(settings.AXES_FAILURE_LIMIT):
        response = log_in("wrong", "203.0.113.7", n)
        assert response.status_code in (200, 429)  # the form again, or locked at the last
    locked = log_in("right-password-1", "203.0.113.7", 99)
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session

    other = log_in("right-password-1", "203.0.113.8")
    assert other.status_code == 302 and other["Location"] == "/admin/"

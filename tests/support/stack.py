"""Run the service as it runs in production: web, Celery worker and beat as real processes.

The stack gets a fresh PostgreSQL database (or an SQLite file when PostgreSQL is not
available and not required), its own Redis database number and, with the RabbitMQ
broker, its own RabbitMQ virtual host, all removed afterwards.
Set REQUIRE_SERVICES=1 (as .ci/run does) to turn "Redis/PostgreSQL missing" into a
failure instead of a skip.
"""

import atexit
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.project import ROOT, manage, project_env

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
PG_ADMIN_URL = "postgres://postgres@127.0.0.1:5432/postgres"
BIN = Path(sys.executable).parent


def required() -> bool:
    return os.environ.get("REQUIRE_SERVICES") == "1"


def missing(what: str) -> None:
    message = f"{what} is not running on this machine"
    if required():
        pytest.fail(f"{message}, and REQUIRE_SERVICES=1")
    pytest.skip(message)


def redis_available() -> bool:
    try:
        with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


RABBITMQ_HOST, RABBITMQ_PORT = "127.0.0.1", 5672
BROKERS = ("redis", "rabbitmq")


def rabbitmq_available() -> bool:
    try:
        with socket.create_connection((RABBITMQ_HOST, RABBITMQ_PORT), timeout=1):
            pass
    except OSError:
        return False
    return shutil.which("rabbitmqctl") is not None


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """The broker URL of a new RabbitMQ virtual host (its own queues), deleted afterwards."""
    if not rabbitmq_available():
        missing("RabbitMQ")
    vhost = f"stack_{secrets.token_hex(4)}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, capture_output=True)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{vhost}"
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=2):
            return True
    except Exception:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def fresh_database(
    tmp_path: Path, *, migrated: bool = False
) -> Iterator[tuple[str, Callable[[str], list]]]:
    """(DATABASE_URL, query function) for a new database, dropped afterwards: empty, or
    (`migrated`) a copy of this process's migrated template, which spares each stack its
    own `migrate` (about half of a stack's start) while every test still gets a database
    of its own."""
    if postgres_available():
        import psycopg

        name = f"stack_{secrets.token_hex(4)}"
        template = f' TEMPLATE "{_postgres_template()}"' if migrated else ""
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"{template}')
        url = f"postgres://postgres@127.0.0.1:5432/{name}"

        def query(sql: str) -> list:
            with psycopg.connect(url) as conn:
                return conn.execute(sql).fetchall()

        try:
            yield url, query
        finally:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    if os.environ.get("REQUIRE_POSTGRES"):
        pytest.fail("PostgreSQL is required but not running")
    path = tmp_path / "stack.sqlite3"
    if migrated:
        with sqlite3.connect(_sqlite_template()) as source, sqlite3.connect(path) as copy:
            source.backup(copy)

    def query(sql: str) -> list:
        with sqlite3.connect(path) as conn:
            return conn.execute(sql).fetchall()

    yield f"sqlite:///{path}", query


_TEMPLATES: dict[str, str] = {}


def _postgres_template() -> str:
    """The name of this process's migrated PostgreSQL database to copy (CREATE DATABASE
    ... TEMPLATE), migrated on first use and dropped when the process ends."""
    if "postgres" not in _TEMPLATES:
        import psycopg

        name = f"stack_template_{secrets.token_hex(4)}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        atexit.register(drop)
        _migrate_template(f"postgres://postgres@127.0.0.1:5432/{name}")
        _TEMPLATES["postgres"] = name
    return _TEMPLATES["postgres"]


def _sqlite_template() -> str:
    """The path of this process's migrated SQLite file to copy, as `_postgres_template`."""
    if "sqlite" not in _TEMPLATES:
        folder = Path(tempfile.mkdtemp(prefix="stack-template-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _migrate_template(f"sqlite:///{folder / 'template.sqlite3'}")
        _TEMPLATES["sqlite"] = str(folder / "template.sqlite3")
    return _TEMPLATES["sqlite"]


def _migrate_template(database_url: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="stack-migrate-"))
    try:
        result = manage(project_env(folder, DATABASE_URL=database_url), "migrate", "--noinput")
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Stack:
    env: dict[str, str]
    web_url: str
    query: Callable[[str], list]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def manage(self, *args: str, timeout: float = 120) -> str:
        result = manage(self.env, *args, timeout=timeout)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def start(self, name: str, args: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("w")
        self.processes[name] = subprocess.Popen(
            args,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        self._signal(name, sig)
        self._reap(name)

    def stop_all(self) -> None:
        """Every process told at once, so that they shut down side by side; then each
        reaped as `stop` does."""
        for name in self.processes:
            self._signal(name, signal.SIGTERM)
        for name in list(self.processes):
            self._reap(name)

    def _signal(self, name: str, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.processes[name].pid, sig)

    def _reap(self, name: str) -> None:
        process = self.processes.pop(name)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def start_worker(
        self, name: str = "worker", *, concurrency: int = 2, cpu: int | None = None
    ) -> None:
        """A Celery worker; with `cpu`, pinned to that core (taskset) as a one-core machine."""
        pin = ["taskset", "-c", str(cpu)] if cpu is not None else []
        self.start(
            name,
            [
                *pin, str(BIN / "celery"), "-A", "config", "worker", "--loglevel=INFO",
                f"--concurrency={concurrency}", "--without-gossip", "--without-mingle",
                "-n", f"{name}-{secrets.token_hex(3)}@%h",
            ],
        )  # fmt: skip

    def get(self, path: str, **kwargs) -> httpx.Response:
        return httpx.get(self.web_url + path, timeout=30, **kwargs)

    def wait_for(self, what: str, check: Callable[[], object], timeout: float = 90):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise AssertionError(f"{name} exited early:\n{self.log(name)}")
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}\n" + self.all_logs())

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text()[-4000:]

    def all_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in self.logs.glob("*.log"))

    def jobs(self) -> list[tuple]:
        return self.query("SELECT id, status, trigger, counts FROM imports_importjob ORDER BY id")

    def cars_json(self, path: str) -> list[dict]:
        response = self.get(path)
        assert response.status_code == 200, response.text
        return json.loads(response.text.replace(self.web_url, "http://HOST"))


@contextmanager
def running_stack(
    tmp_path: Path,
    extra_env: dict[str, str],
    *,
    beat: bool,
    broker: str = "redis",
    worker: bool = True,
) -> Iterator[Stack]:
    """Web, a worker (unless `worker` is False) and beat, on Redis or RabbitMQ (`broker`)."""
    if not redis_available():
        missing("Redis")
    if broker == "rabbitmq":
        with (
            rabbitmq_vhost() as broker_url,
            running_stack(
                tmp_path, {"CELERY_BROKER_URL": broker_url, **extra_env}, beat=beat, worker=worker
            ) as stack,
        ):
            yield stack
        return
    logs = tmp_path / "logs"
    logs.mkdir(parents=True)
    with (
        redis_database() as redis_db,
        fresh_database(tmp_path, migrated=True) as (database_url, query),
    ):
        redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_", "CELERY_"))
        }
        env.update(
            DJANGO_SETTINGS_MODULE="config.settings.development",
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            MEDIA_ROOT=str(tmp_path / "media"),
            CARS_FETCH_BACKOFF="0.05",
            PYTHONUNBUFFERED="1",
        )
        env.update(extra_env)  # may override the above, e.g. REDIS_URL of a test's own Redis
        port = free_port()
        stack = Stack(env=env, web_url=f"http://127.0.0.1:{port}", query=query, logs=logs)
        _flush_redis(redis_db)
        try:
            stack.start(
                "web", [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"]
            )
            if worker:
                stack.start_worker()
            if beat:
                stack.start(
                    "beat",
                    [str(BIN / "celery"), "-A", "config", "beat", "--loglevel=INFO",
                     "-s", str(tmp_path / "beat-schedule")],
                )  # fmt: skip
            stack.wait_for("web", lambda: _answers(stack.web_url + "/healthz"))
            yield stack
        finally:
            stack.stop_all()
            _flush_redis(redis_db)


@contextmanager
def redis_database() -> Iterator[int]:
    """A Redis database number (1-14) that no other stack of this run is using meanwhile.

    In a parallel run (pytest-xdist) each worker process has its own share of the numbers,
    so two stacks running at once never flush or read each other's database; within one
    process, a number in use (a stack started inside another's lifetime) is not handed out
    twice. The pick is random within the share: runs of other checkouts on the same Redis
    rarely meet either.
    """
    workers = min(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 14)
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    share = [db for db in range(1, 15) if (db - 1) % workers == worker % workers]
    db = secrets.choice([db for db in share if db not in _REDIS_DBS_IN_USE] or share)
    _REDIS_DBS_IN_USE.add(db)
    try:
        yield db
    finally:
        _REDIS_DBS_IN_USE.discard(db)


_REDIS_DBS_IN_USE: set[int] = set()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _flush_redis(db: int) -> None:
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as sock:
        sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        sock.recv(64)

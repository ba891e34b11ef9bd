"""The project run as a user or a deployment runs it: `python` and `manage.py` in a
subprocess from the repository root, with an environment of its own."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent.parent


def project_env(folder: Path, **extra: str) -> dict[str, str]:
    """The environment of a project process (manage.py, gunicorn) on its own SQLite file
    and media folder under `folder`: development settings, nothing from this process's
    DJANGO_*/CARS_* variables, no Redis."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CARS_"))}
    env.pop("REDIS_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.development",
        DATABASE_URL=f"sqlite:///{folder / 'db.sqlite3'}",
        MEDIA_ROOT=str(folder / "media"),
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], *, timeout: float = 120):
    """`python *args` from the repository root: its exit status, stdout and stderr (text)."""
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def manage(env: dict[str, str], *args: str, timeout: float = 120):
    """`python manage.py *args`, as `run` does it."""
    return run(["manage.py", *args], env, timeout=timeout)


def migrate(env: dict[str, str]) -> None:
    result = manage(env, "migrate", "--noinput", "-v0")
    assert result.returncode == 0, result.stderr


GUNICORN = str(Path(sys.executable).parent / "gunicorn")


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], log: Path, *, ports: list[int] | None = None
) -> Iterator[list[str]]:
    """gunicorn (one worker) from the repository root, bound to `ports` on 127.0.0.1 (one
    free port by default), once it answers `/healthz` on the first. Yields the base URLs,
    one per port; stopped (its whole process group) on exit. Its output goes to `log`."""
    from tests.support.stack import free_port

    bound = ports or [free_port()]
    binds = [arg for port in bound for arg in ("-b", f"127.0.0.1:{port}")]
    with log.open("w") as out:
        process = subprocess.Popen(
            [GUNICORN, "config.wsgi", "-w", "1", *binds],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    urls = [f"http://127.0.0.1:{port}" for port in bound]
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                httpx.get(f"{urls[0]}/healthz", timeout=2, trust_env=False)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield urls
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)

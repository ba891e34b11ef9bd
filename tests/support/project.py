"""The project run as a user or a deployment runs it: `python` and `manage.py` in a
subprocess from the repository root, with an environment of its own."""

import os
import subprocess
import sys
from pathlib import Path

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

"""The one switch between running work here and queueing it for Celery workers.

With a broker (`CELERY_BROKER_URL`, which defaults to `REDIS_URL`) jobs, image chunks and
re-renders are Celery tasks; without one (the laptop default) the same functions run in
the calling process.
"""

from django.conf import settings
from django.db import transaction


def queued() -> bool:
    """Whether work goes to Celery workers."""
    return bool(settings.CELERY_BROKER_URL) and not settings.CELERY_BROKER_URL.startswith(
        "memory://"
    )


def enqueue(task, *args) -> None:
    """Send `task(*args)` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: task.delay(*args))

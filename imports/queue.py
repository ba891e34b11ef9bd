"""The one switch between running work here and queueing it for Celery workers, and the
names of the tasks that services send.

With a broker (`CELERY_BROKER_URL`, which defaults to `REDIS_URL`) jobs, image chunks and
re-renders are Celery tasks; without one (the laptop default) the same functions run in
the calling process.

Services send tasks by their registered name (the name is what travels in a message):
imports.tasks calls the services, so the services must not import it back.
"""

from celery import current_app
from django.conf import settings
from django.db import transaction

RUN_IMPORT_JOB = "imports.tasks.run_import_job"
PROCESS_IMAGE_CHUNK = "imports.tasks.process_image_chunk"
RENDER_PICTURE = "imports.tasks.render_picture"
RETRY_IMAGES = "imports.tasks.retry_images"


def queued() -> bool:
    """Whether work goes to Celery workers."""
    return bool(settings.CELERY_BROKER_URL) and not settings.CELERY_BROKER_URL.startswith(
        "memory://"
    )


def send(task: str, *args) -> None:
    """Send the task named `task` with `args` now."""
    current_app.tasks[task].delay(*args)


def enqueue(task: str, *args) -> None:
    """Send the task named `task` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task, *args))

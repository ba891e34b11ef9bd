"""The one switch between running work here and queueing it for Celery workers.

With a broker (`CELERY_BROKER_URL`, which defaults to `REDIS_URL`) jobs, image chunks and
re-renders are Celery tasks; without one (the laptop default) the same functions run in
the calling process. Services send tasks by name: imports.tasks imports the services.
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
    url = settings.CELERY_BROKER_URL
    return bool(url) and not url.startswith("memory://")


def send(task: str, *args) -> None:
    current_app.tasks[task].delay(*args)


def enqueue(task: str, *args) -> None:
    """Send the task named `task` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task, *args))

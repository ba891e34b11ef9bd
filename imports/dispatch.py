"""The one switch between running work here and sending it to Celery workers.

With a broker (`CELERY_BROKER_URL`, which defaults to `REDIS_URL`) jobs, image chunks,
re-renders and image retries are Celery tasks; without one (the laptop default) the same
functions run in the calling process. This module alone asks which (`queued`); its callers
say what to run here and which task to send, and tasks are sent by name (imports.tasks
imports the services).
"""

from collections.abc import Callable, Iterable
from typing import TypeVar

from celery import current_app
from django.conf import settings
from django.db import transaction

from .lifecycle import chunks_sent, mark_queued
from .models import ImageChunk, ImportJob

RUN_IMPORT_JOB = "imports.tasks.run_import_job"
PROCESS_IMAGE_CHUNK = "imports.tasks.process_image_chunk"
RENDER_PICTURE = "imports.tasks.render_picture"
RETRY_IMAGES = "imports.tasks.retry_images"

T = TypeVar("T")


def queued() -> bool:
    """Whether work goes to Celery workers."""
    url = settings.CELERY_BROKER_URL
    return bool(url) and not url.startswith("memory://")


def run_or_send(task: str, here: Callable[..., T], *args) -> T | None:
    """`here(*args)` now, and its result; with a broker, the task named `task` is sent with
    `args` once the current transaction commits instead, and None is returned."""
    done = run_or_send_each(task, here, [args])
    return None if done is None else done[0]


def run_or_send_each(task: str, here: Callable[..., T], calls: Iterable[tuple]) -> list[T] | None:
    """`run_or_send` for each tuple of arguments: the results in order, or None if sent."""
    if queued():
        for args in calls:
            enqueue(task, *args)
        return None
    return [here(*args) for args in calls]


def assign(job: ImportJob) -> None:
    """Where `job`'s image work will run: in chunks on the workers when a broker is
    configured (the job is marked queued, before any task of it is sent), else here."""
    if queued():
        mark_queued(job)


def send(task: str, *args) -> None:
    current_app.tasks[task].delay(*args)


def enqueue(task: str, *args) -> None:
    """Send the task named `task` once the current transaction commits (at once outside one)."""
    transaction.on_commit(lambda: send(task, *args))


def send_chunks(job_id: int) -> None:
    """Send the tasks of the job's chunks never sent, then note that they were."""
    unsent = ImageChunk.objects.filter(
        job_id=job_id, status=ImageChunk.Status.QUEUED, heartbeat_at__isnull=True
    )
    ids = list(unsent.values_list("pk", flat=True))
    for pk in ids:
        send(PROCESS_IMAGE_CHUNK, pk)
    chunks_sent(ids)

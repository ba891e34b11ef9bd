"""The Celery app: `celery -A config worker` serves every task; `celery -A config beat`
schedules the import sweep, and the periodic sync when CARS_SYNC_INTERVAL > 0."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")

app = Celery("image_backend")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_after_finalize.connect
def _schedule(sender: Celery, **kwargs) -> None:
    from django.conf import settings

    # Several sweeps per heartbeat timeout: dead workers' work is handed out again soon
    # after their beats go stale.
    every = max(5.0, settings.CARS_IMPORT_HEARTBEAT_TIMEOUT / 4)
    sender.add_periodic_task(
        every,
        # A sweep stuck behind a backlog is worth nothing once the next one is sent.
        sender.signature("imports.tasks.sweep_imports", options={"expires": every}),
        name="hand out again the work of dead import workers",
    )
    if settings.CARS_SYNC_INTERVAL > 0:
        sender.add_periodic_task(
            float(settings.CARS_SYNC_INTERVAL),
            sender.signature("imports.tasks.sync_source"),
            name="sync CARS_CSV_SOURCE",
        )

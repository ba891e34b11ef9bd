"""WSGI entry point (gunicorn config.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.development")

application = get_wsgi_application()


def _load_urls() -> None:
    """Import the URLconf and every view now, not in a worker's first request.

    Django loads them lazily, so a fresh gunicorn worker's first request paid for all the
    imports. No database connection is
    opened here, so this is safe before gunicorn forks (--preload).
    """
    from django.urls import get_resolver

    resolver = get_resolver()
    for path in ("/api/cars/", "/api/cars/web/", "/api/cars/1/", "/api/imports/", "/"):
        resolver.resolve(path)


_load_urls()

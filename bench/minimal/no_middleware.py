"""The minimal project with no apps and no middleware at all: what Django itself costs a
cached view (gunicorn, the handler, URL routing, a response). Information only: no
project that sends security headers runs this way."""

from .settings import *  # noqa: F403

INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []

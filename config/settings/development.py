"""Laptop defaults: SQLite, local media, tasks inline, nothing else to run."""

from .base import *  # noqa: F403
from .base import STORAGES, env

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env("SECRET_KEY", default="dev-insecure-0s9d8f7g6h5j4k3l2-not-for-production")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CARS_ALLOW_PRIVATE_URLS = env.bool("CARS_ALLOW_PRIVATE_URLS", default=True)
SERVE_MEDIA = True
# Plain static storage: no collectstatic needed outside production.
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic
WHITENOISE_AUTOREFRESH = True

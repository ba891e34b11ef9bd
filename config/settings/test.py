"""Test settings: like development, but quick and isolated."""

from .base import *  # noqa: F403
from .base import STORAGES, env

DEBUG = False
SECRET_KEY = "test-insecure-key"
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
CARS_ALLOW_PRIVATE_URLS = env.bool("CARS_ALLOW_PRIVATE_URLS", default=True)
SERVE_MEDIA = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Quick retries so tests of the retry rules stay fast.
CARS_FETCH_BACKOFF = 0.01
CARS_FETCH_TIMEOUT = 5.0
# Plain static storage: no collectstatic needed outside production.
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
WHITENOISE_USE_FINDERS = True  # serve app static files without collectstatic
WHITENOISE_AUTOREFRESH = True
# A search engine (SEARCH_URL, set by the tests that use one) makes each write visible at
# once: waiting for its refresh interval would cost every test a second.
SEARCH_REFRESH = "true"
SEARCH_REPLICAS = 0

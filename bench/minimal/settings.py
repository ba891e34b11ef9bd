"""Minimal settings: one database (the bench's SQLite file), no apps, no middleware."""

import os

DEBUG = False
SECRET_KEY = "bench-minimal-not-secret"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.minimal.urls"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_DB"]}}
USE_TZ = True
USE_I18N = False
LOGGING_CONFIG = None

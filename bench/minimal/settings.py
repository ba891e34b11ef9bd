"""Minimal settings: one database (the bench's SQLite file), and the apps and middleware
of Django's own `startproject` template: what a real Django project serves a view through
(security headers, sessions, CSRF, authentication, messages, X-Frame-Options). The API
rows compare a cached page of ours, which runs its own stack, with a cached view behind
this one; `no_middleware` is the same project with none, Django's floor (information).
"""

import os

DEBUG = False
SECRET_KEY = "bench-minimal-not-secret"
ALLOWED_HOSTS = ["127.0.0.1"]
ROOT_URLCONF = "bench.minimal.urls"
# django/conf/project_template/project_name/settings.py-tpl, but admin and staticfiles
# (no admin page, no static file is served here).
INSTALLED_APPS: list[str] = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
MIDDLEWARE: list[str] = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_DB"]}}
USE_TZ = True
USE_I18N = False
LOGGING_CONFIG = None

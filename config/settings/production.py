"""Production: every deployment value must come from the environment.

Importing this module fails with ImproperlyConfigured naming the missing variable, so
`manage.py` and `import config.wsgi` both refuse to start half-configured.
"""

import logging

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import USE_S3, env, logging_config


def _required(name: str) -> str:
    value = env(name, default="")
    if not value:
        raise ImproperlyConfigured(f"Set the {name} environment variable.")
    return value


DEBUG = False  # never on in production, whatever the environment says
SECRET_KEY = _required("SECRET_KEY")
ALLOWED_HOSTS = [h.strip() for h in _required("ALLOWED_HOSTS").split(",") if h.strip()]
_required("DATABASE_URL")  # base read it into DATABASES, with its connection settings
CARS_ALLOW_PRIVATE_URLS = env.bool("CARS_ALLOW_PRIVATE_URLS", default=False)
# Uploaded CSVs go to a private bucket of their own, never beside the public media.
if USE_S3:
    _required("AWS_IMPORTS_BUCKET_NAME")

# Behind a TLS-terminating proxy.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes and scrapes
# Scrapes on their own port, never through the public one (ops.metrics).
CARS_METRICS_PORT = env.int("CARS_METRICS_PORT", default=9100)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# One JSON object per log line, for the log pipeline; Python warnings included.
LOG_FORMAT = env("LOG_FORMAT", default="json")
LOGGING = logging_config(LOG_FORMAT, env("LOG_LEVEL", default="INFO"))
logging.captureWarnings(True)

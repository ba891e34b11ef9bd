"""The minimal project counting each request in django-prometheus' families, as ours does
for `/metrics`, at ours' price: its Before middleware first and ours in place of its After
middleware last (core/request_metrics.py, the same metrics, labels and values, cheaper
than the stock one). What a project that Prometheus scrapes pays on every request; the
cached page's reference (issue #26)."""

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    *MIDDLEWARE,
    "core.request_metrics.PrometheusAfterMiddleware",
]

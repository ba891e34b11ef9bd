"""The minimal project with django-prometheus' request metrics, set up as its README says
(the app, its Before middleware first and its After middleware last): what a project
that Prometheus scrapes pays on every request, as ours does for `/metrics`. Information:
it tells how much of a cached page's cost is the metrics (issue #26)."""

from .settings import *  # noqa: F403
from .settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "django_prometheus"]
MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    *MIDDLEWARE,
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

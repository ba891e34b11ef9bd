"""Import and image metrics for /metrics, read from the database at scrape time.

Imports run in Celery workers, not in the web process that serves /metrics, so
in-process counters would miss them; the database is the truth. A scrape must stay cheap
however many jobs there are and however many failures each recorded, and it writes
nothing: the import counters are running totals (imports.totals) to which each succeeded
job added its counts and its image failures by reason as it closed; the gauges are
GROUP BYs on indexed columns. Request counts and latency come from django-prometheus.

/metrics is for the scraper only: with CARS_METRICS_PORT set (production), it answers
only on that port, which gunicorn binds beside the public one and no Service or Ingress
routes to (deploy/), and 404 anywhere else.
"""

from django.conf import settings
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django_prometheus.exports import ExportToDjangoView
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from cars.models import Car
from imports.models import ImportJob
from imports.totals import FAILURES, ROWS, totals

FAMILIES = {
    "image_backend_import_jobs": (GaugeMetricFamily, "Import jobs by status", "status"),
    "image_backend_import_rows": (
        CounterMetricFamily,
        "Rows and images handled by succeeded imports",
        "outcome",
    ),
    "image_backend_import_image_failures": (
        CounterMetricFamily,
        "Image failures recorded by succeeded imports, by reason code",
        "reason",
    ),
    "image_backend_cars": (GaugeMetricFamily, "Cars in the catalogue by image status", "status"),
    "image_backend_car_image_errors": (
        GaugeMetricFamily,
        "Cars whose image currently failed, by reason code",
        "reason",
    ),
}


def _family(name: str, values: dict[str, int]):
    kind, documentation, label = FAMILIES[name]
    family = kind(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


class CatalogueCollector(Collector):
    def describe(self):
        """Names only: registration must not query the database (it may not exist yet)."""
        return [_family(name, {}) for name in FAMILIES]

    def collect(self):
        counted = totals()

        def grouped(queryset, field: str) -> dict[str, int]:
            return {r[field]: r["n"] for r in queryset.values(field).annotate(n=Count("id"))}

        return [
            _family("image_backend_import_jobs", grouped(ImportJob.objects, "status")),
            _family("image_backend_import_rows", counted[ROWS]),
            _family("image_backend_import_image_failures", counted[FAILURES]),
            _family("image_backend_cars", grouped(Car.objects, "image_status")),
            _family(
                "image_backend_car_image_errors",
                grouped(Car.objects.exclude(image_error=None), "image_error"),
            ),
        ]


def metrics_view(request: HttpRequest) -> HttpResponse:
    """django-prometheus's export, on the metrics port only (when one is set)."""
    port = settings.CARS_METRICS_PORT
    if port and _local_port(request) != port:
        raise Http404
    return ExportToDjangoView(request)


def _local_port(request: HttpRequest) -> int | None:
    """The port the connection came in on: gunicorn's socket, not the Host header (which
    the client writes). None under any other server: then nothing is served."""
    sock = request.META.get("gunicorn.socket")
    try:
        return sock.getsockname()[1] if sock is not None else None
    except (OSError, IndexError, TypeError):
        return None


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CatalogueCollector())
        _registered = True

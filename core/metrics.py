"""Import and image metrics for /metrics, read from the database at scrape time.

Imports run in Celery workers, not in the web process that serves /metrics, so
in-process counters would miss them; the job table and the cars are the truth.
Request counts and latency come from django-prometheus.
"""

from collections import Counter

from django.db.models import Count
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

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
        from cars.models import Car
        from imports.models import ImportJob

        rows: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        succeeded = ImportJob.objects.filter(status=ImportJob.Status.SUCCEEDED)
        for counts, image_failures in succeeded.values_list("counts", "image_failures"):
            rows.update({k: v for k, v in (counts or {}).items() if isinstance(v, int)})
            failures.update(f["reason"] for f in image_failures or [])

        def grouped(queryset, field: str) -> dict[str, int]:
            return {r[field]: r["n"] for r in queryset.values(field).annotate(n=Count("id"))}

        return [
            _family("image_backend_import_jobs", grouped(ImportJob.objects, "status")),
            _family("image_backend_import_rows", rows),
            _family("image_backend_import_image_failures", failures),
            _family("image_backend_cars", grouped(Car.objects, "image_status")),
            _family(
                "image_backend_car_image_errors",
                grouped(Car.objects.exclude(image_error=None), "image_error"),
            ),
        ]


_registered = False


def register() -> None:
    global _registered
    if not _registered:
        REGISTRY.register(CatalogueCollector())
        _registered = True

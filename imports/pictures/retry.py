"""Retrying failed images without a CSV: the import's image phase again, for chosen cars.

The admin's "Retry failed images" action runs it (here, or on a worker). Only references with a
scheme (http/https URLs) are retried: a relative path was resolved inside its CSV's
folder, and which folder that was is not recorded once the import is over. Such cars are
left exactly as they are and counted as skipped; re-importing their CSV retries them.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet

from cars.models import Car, CarPicture, ImageStatus

from .pipeline import CarRef, ImagePipeline, group_items, run_items

NO_LINE = 0  # a CarRef's CSV line: there is no CSV here


@dataclass
class RetryOutcome:
    """Counted per picture: a car's first and its further ones alike."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0  # relative paths: only re-importing their CSV can retry them
    reasons: Counter = field(default_factory=Counter)  # failures by reason code

    def summary(self) -> str:
        text = f"{self.ok} fixed, {self.failed} still failing"
        if self.reasons:
            text += " (" + ", ".join(f"{r}: {n}" for r, n in sorted(self.reasons.items())) + ")"
        if self.skipped:
            text += (
                f"; {self.skipped} skipped: a relative image path can only be retried "
                "by importing its CSV again"
            )
        return text


def is_retryable(ref: str) -> bool:
    """A reference with a scheme (a URL); a relative path needs its CSV's folder."""
    scheme = urlsplit(ref.strip()).scheme
    return len(scheme) > 1  # one letter is a Windows drive, not a scheme


def with_failed_images(cars: QuerySet) -> QuerySet:
    """Those of `cars` with a failed picture: their first, or a further one."""
    further = CarPicture.objects.filter(car=OuterRef("pk"), status=ImageStatus.FAILED)
    return cars.filter(Q(image_status=ImageStatus.FAILED) | Q(Exists(further)))


def retry_failed_images(*, car_ids: Iterable[int], workers: int | None = None) -> RetryOutcome:
    """Fetch, check, store and render again the failed pictures of those cars.

    Pictures of `car_ids` that did not fail are left alone. Outcomes are written on the
    cars exactly as an import writes them (status, reason code, renditions).
    """
    outcome = RetryOutcome()
    ids = list(car_ids)
    first = Car.objects.filter(pk__in=ids, image_status=ImageStatus.FAILED)
    further = CarPicture.objects.filter(car_id__in=ids, status=ImageStatus.FAILED)
    failed = [
        (pk, 0, key, ref)
        for pk, key, ref in first.values_list("pk", "external_key", "source_image_url")
    ]
    failed += further.values_list("car_id", "position", "car__external_key", "source_url")
    failed.sort()  # each car's pictures in its list's order
    refs = []
    for pk, position, key, ref in failed:
        if not is_retryable(ref):
            outcome.skipped += 1
            continue
        refs.append((ref.strip(), CarRef(pk, NO_LINE, key, position)))
    if not refs:
        return outcome
    # URLs only (see the module docstring): no folder to resolve paths in.
    with ImagePipeline(base_dir=None, workers=workers or settings.CARS_IMPORT_WORKERS) as pipeline:
        recorded = run_items(pipeline, group_items(refs))
    outcome.ok, outcome.failed = recorded.ok, recorded.failed
    outcome.reasons.update(str(failure.reason) for failure in recorded.failures)
    return outcome

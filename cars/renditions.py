"""Making and forgetting renditions.

Renditions are django-imagekit cache files (`CACHE/images/...`), one ImageSpecField per
platform. They are generated here, by the import pipeline, right after an original is
stored, and their names and sizes are written on the car, so that reading the catalogue
never processes an image nor asks the storage anything.
"""

from django.core.files.images import get_image_dimensions
from django.core.files.storage import default_storage

from .models import Car
from .platforms import get_platforms


class GeneratedByImport:
    """imagekit cache-file strategy: never generate on access.

    imagekit's default (JustInTime) would render inside the first request that reads
    `.url`; here the import renders, and reads use the names stored on the car.
    """

    def on_existence_required(self, file) -> None:
        pass

    def on_content_required(self, file) -> None:
        pass

    def on_source_saved(self, file) -> None:
        pass

    def should_verify_existence(self, file) -> bool:
        return False


def render_all(car: Car) -> dict[str, dict]:
    """Generate every platform's rendition of `car.image`; return what the car stores.

    The returned mapping is `{platform: {"name", "width", "height"}}`.
    """
    renditions = {}
    for platform in get_platforms().values():
        cachefile = getattr(car, platform.attname)
        storage = cachefile.storage
        if storage.exists(cachefile.name):
            # A forced generate onto an existing name makes the storage pick another name.
            storage.delete(cachefile.name)
        if not car.image.closed:
            car.image.seek(0)
        cachefile.generate(force=True)
        with storage.open(cachefile.name, "rb") as fh:
            width, height = get_image_dimensions(fh, close=False)
        renditions[platform.name] = {"name": cachefile.name, "width": width, "height": height}
    return renditions


def delete_files(names: list[str]) -> None:
    """Delete stored originals/renditions; a file already gone is not an error."""
    for name in names:
        if name:
            default_storage.delete(name)


def stored_files(image_name: str, renditions: dict) -> list[str]:
    """Every file a car owns: its original and its renditions."""
    return [image_name, *(r["name"] for r in (renditions or {}).values() if r)]


def rerender_car(car_id: int) -> bool:
    """Make every platform's rendition again from the stored original (e.g. a new platform).

    Returns False when the car is gone or has no image.
    """
    from django.db import transaction

    from .catalog import bump_catalog_version

    car = Car.objects.filter(pk=car_id).first()
    if car is None or not car.image:
        return False
    old = [r["name"] for r in (car.renditions or {}).values() if r]
    renditions = render_all(car)
    delete_files([name for name in old if name not in {r["name"] for r in renditions.values()}])
    with transaction.atomic():
        Car.objects.filter(pk=car_id).update(renditions=renditions)
        bump_catalog_version()
    return True

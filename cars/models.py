from django.db import models
from django.utils import timezone
from imagekit.models import ImageSpecField

from .platforms import get_platforms


def original_upload_to(instance: "Car", filename: str) -> str:
    return f"images/image_{instance.pk}/{filename}"


class ImageStatus(models.TextChoices):
    NONE = "none", "No image"
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Car(models.Model):
    external_key = models.CharField(
        max_length=255, unique=True, help_text="Natural key: the CSV id, or a hash of the row."
    )
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")
    source_image_url = models.TextField(
        blank=True, default="", help_text="The image reference as written in the CSV."
    )
    image = models.ImageField(upload_to=original_upload_to, max_length=500, blank=True)
    image_fetched_from = models.TextField(
        blank=True, default="", help_text="The reference the stored image was fetched from."
    )
    image_status = models.CharField(
        max_length=16, choices=ImageStatus.choices, default=ImageStatus.NONE, db_index=True
    )
    # NULL, not "", means "no error": the API reports it as null.
    image_error = models.CharField(max_length=32, null=True, blank=True, db_index=True)  # noqa: DJ001
    image_error_message = models.TextField(blank=True, default="")
    renditions = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per platform: stored name, width and height, so reads need no storage call.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        indexes = [
            models.Index(fields=["title", "id"], name="car_title_id"),
            models.Index(fields=["updated_at", "id"], name="car_updated_id"),
        ]

    def __str__(self) -> str:
        return self.title


for _platform in get_platforms().values():
    Car.add_to_class(
        _platform.attname,
        ImageSpecField(
            source="image",
            processors=list(_platform.processors),
            format=_platform.format,
            options=_platform.options,
        ),
    )


class CatalogState(models.Model):
    """One row whose version every change to the catalogue bumps.

    ETags and cached counts are keyed by it, so an import invalidates them all at once.
    """

    version = models.PositiveBigIntegerField(default=0)
    changed_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"catalogue version {self.version}"


class SearchWord(models.Model):
    """One word of the catalogue's titles and descriptions: the vocabulary that search
    corrects typos against (cars/search.py).

    Derived data, rebuilt in bulk by `cars.search.rebuild_vocabulary`: never edit it by hand.
    `word` is folded (lower case, accents removed), as both search indexes compare words;
    `spelling` is how the catalogue writes it most often, for the correction people see.
    """

    word = models.CharField(max_length=64, primary_key=True)
    spelling = models.CharField(max_length=64)
    occurrences = models.PositiveIntegerField()  # the commoner of two equally near words wins

    def __str__(self) -> str:
        return self.word

from django.db import models
from django.utils import timezone


def original_upload_to(instance, filename: str) -> str:
    """The per-car layout before pictures by content (kept for migration 0001)."""
    return f"images/image_{instance.pk}/{filename}"


class ImageStatus(models.TextChoices):
    NONE = "none", "No image"
    PENDING = "pending", "Pending"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class Picture(models.Model):
    """One distinct picture, by content: stored once, rendered once per platform.

    Its original is `images/<sha256>.<ext>`; imagekit names its renditions after that
    name and the spec (`CACHE/images/<sha256>/<spec hash>.jpg`), so every car that shows
    the same bytes, under whatever URL, shares the same files, and a name never serves
    other bytes (CDNs may cache forever). Files are deleted with the last car that shows
    them (`cars.pictures.store.release_pictures`). Each platform's ImageSpecField is
    added when the app is ready (`cars.pictures.rendering.add_rendition_specs`).
    """

    sha256 = models.CharField(max_length=64, unique=True)
    image = models.ImageField(upload_to="images/", max_length=255)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    renditions = models.JSONField(
        default=dict,
        blank=True,
        help_text="Per platform: stored name, width and height, so reads need no storage call.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    def __str__(self) -> str:
        return self.image.name

    def stored_names(self) -> list[str]:
        """Every file this picture owns: its original and its renditions."""
        return [self.image.name, *(r["name"] for r in (self.renditions or {}).values() if r)]


class Car(models.Model):
    external_key = models.CharField(
        max_length=255, unique=True, help_text="Natural key: the CSV id, or a hash of the row."
    )
    title = models.CharField(max_length=255)
    description = models.TextField(blank=True, default="")  # plain text
    description_html = models.TextField(
        blank=True, default="", help_text="Sanitised, when the feed wrote the description in HTML."
    )
    attributes = models.JSONField(
        default=dict, blank=True, help_text="The feed's other columns: name -> value."
    )
    source_image_url = models.TextField(
        blank=True, default="", help_text="The image reference as written in the CSV."
    )
    picture = models.ForeignKey(
        Picture, null=True, blank=True, on_delete=models.PROTECT, related_name="cars"
    )
    image_fetched_from = models.TextField(
        blank=True, default="", help_text="The reference the stored image was fetched from."
    )
    image_status = models.CharField(
        max_length=16, choices=ImageStatus.choices, default=ImageStatus.NONE, db_index=True
    )
    # NULL, not "", means "no error": the API reports it as null.
    image_error = models.CharField(max_length=32, null=True, blank=True, db_index=True)  # noqa: DJ001
    image_error_message = models.TextField(blank=True, default="")
    # The per-car files of the layout before pictures by content (`images/image_<id>/…`),
    # read until `manage.py migrate_pictures` has moved them; empty afterwards.
    legacy_image = models.ImageField(upload_to=original_upload_to, max_length=500, blank=True)
    legacy_renditions = models.JSONField(
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

    @property
    def image(self):
        """The original this car shows (a file of its picture, or of its own before
        `migrate_pictures`); falsy when it has none."""
        return self.picture.image if self.picture_id else self.legacy_image

    @property
    def renditions(self) -> dict:
        """{platform: {"name", "width", "height"}} of the renditions this car shows."""
        return self.picture.renditions if self.picture_id else (self.legacy_renditions or {})


class CarPicture(models.Model):
    """One of a car's pictures after its first, at its place in the feed's list.

    Position 0 is the car's own picture columns (`Car.picture`, `image_status`, ...), so
    the list API reads one join whatever a car has; positions 1, 2, ... are rows here.
    Each is fetched, stored by content and failed exactly as the car's own: a `Picture`
    is deleted only when no car and no row here shows it (`cars.pictures`).
    """

    # No index of its own: the unique (car, position) index serves every lookup by car,
    # and a second one cost every insert (a feed's import writes four rows a car).
    car = models.ForeignKey(
        Car, on_delete=models.CASCADE, related_name="more_pictures", db_index=False
    )
    position = models.PositiveIntegerField(help_text="1, 2, ...: the car's own picture is 0.")
    source_url = models.TextField(help_text="The picture reference as written in the feed.")
    picture = models.ForeignKey(
        Picture, null=True, blank=True, on_delete=models.PROTECT, related_name="car_pictures"
    )
    fetched_from = models.TextField(
        blank=True, default="", help_text="The reference the stored picture was fetched from."
    )
    status = models.CharField(
        max_length=16, choices=ImageStatus.choices, default=ImageStatus.PENDING
    )
    # NULL, not "", means "no error": the API reports it as null.
    error = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    error_message = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["car", "position"]
        constraints = [
            models.UniqueConstraint(fields=["car", "position"], name="car_picture_position")
        ]

    def __str__(self) -> str:
        return f"{self.car_id} #{self.position}: {self.source_url}"


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

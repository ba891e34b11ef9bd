"""Output shapes of the cars API (SPEC §6). Input is never accepted: cars are read-only."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cars.pictures.platforms import get_platforms


class RenditionSerializer(serializers.Serializer):
    url = serializers.URLField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


def _images_field() -> serializers.Field:
    """`images`: an object keyed by platform name (`default` included)."""
    return serializers.DictField(child=RenditionSerializer(allow_null=True))


def renditions_by_platform(urls, renditions: dict | None) -> dict[str, dict | None]:
    """Every platform's rendition of a picture, `{"url", "width", "height"}` or None."""
    return {name: urls.rendition(renditions, name) for name in get_platforms()}


class PictureSerializer(serializers.Serializer):
    """One of a car's pictures, in feed order (the first is the car's `image`)."""

    source_url = serializers.CharField(help_text="The picture reference as the feed wrote it.")
    error = serializers.CharField(
        allow_null=True, help_text="Why it has no image (a reason code), or null."
    )
    images = serializers.SerializerMethodField()

    @extend_schema_field(_images_field())
    def get_images(self, row: dict) -> dict[str, dict | None]:
        return renditions_by_platform(self.context["urls"], row["renditions"])


class CarSerializer(serializers.Serializer):
    """A car in a list. `image` is the URL of the requested platform's rendition."""

    id = serializers.IntegerField()
    title = serializers.CharField()
    description = serializers.CharField()
    image = serializers.SerializerMethodField()

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_image(self, row: dict) -> str | None:
        entry = self.context["urls"].rendition(row["renditions"], self.context["platform"])
        return entry["url"] if entry else None

    def to_representation(self, row: dict) -> dict:
        # The declared fields document the shape (OpenAPI); building the dict directly
        # is much cheaper than DRF's field-by-field walk.
        return {
            "id": row["id"],
            "title": row["title"],
            "description": row["description"],
            "image": self.get_image(row),
        }


class CarDetailSerializer(CarSerializer):
    images = serializers.SerializerMethodField()
    source_image_url = serializers.CharField()
    image_error = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    pictures = PictureSerializer(many=True)
    attributes = serializers.DictField(
        child=serializers.CharField(), help_text="The feed's other columns: name -> value."
    )
    description_html = serializers.SerializerMethodField()

    @extend_schema_field(_images_field())
    def get_images(self, row: dict) -> dict[str, dict | None]:
        return renditions_by_platform(self.context["urls"], row["renditions"])

    @extend_schema_field(
        serializers.CharField(
            allow_null=True,
            help_text="The description as sanitised HTML, when the feed wrote it in HTML.",
        )
    )
    def get_description_html(self, row: dict) -> str | None:
        return row["description_html"] or None

    def to_representation(self, row: dict) -> dict:
        return serializers.Serializer.to_representation(self, row)

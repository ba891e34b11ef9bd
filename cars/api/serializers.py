"""Output shapes of the cars API (SPEC §6). Input is never accepted: cars are read-only."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cars.platforms import get_platforms


class RenditionSerializer(serializers.Serializer):
    url = serializers.URLField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()


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

    @extend_schema_field(serializers.DictField(child=RenditionSerializer(allow_null=True)))
    def get_images(self, row: dict) -> dict[str, dict | None]:
        urls = self.context["urls"]
        return {name: urls.rendition(row["renditions"], name) for name in get_platforms()}

    def to_representation(self, row: dict) -> dict:
        return serializers.Serializer.to_representation(self, row)

from django.contrib import admin
from django.core.files.storage import default_storage
from django.utils.html import format_html, format_html_join

from .catalog import bump_catalog_version
from .models import Car
from .platforms import get_platforms


def _rendition_url(car: Car, platform: str) -> str | None:
    entry = (car.renditions or {}).get(platform)
    return default_storage.url(entry["name"]) if entry else None


@admin.register(Car)
class CarAdmin(admin.ModelAdmin):
    list_display = ("thumbnail", "title", "image_status", "image_error", "updated_at")
    list_display_links = ("thumbnail", "title")
    list_filter = ("image_status", "image_error")
    search_fields = ("title", "description", "external_key")
    readonly_fields = (
        "external_key",
        "image",
        "image_fetched_from",
        "image_status",
        "image_error",
        "image_error_message",
        "rendition_previews",
        "created_at",
        "updated_at",
    )
    exclude = ("renditions",)
    list_per_page = 50

    @admin.display(description="Image")
    def thumbnail(self, car: Car) -> str:
        url = _rendition_url(car, "mobile") or _rendition_url(car, "default")
        if not url:
            return "—"
        return format_html('<img src="{}" alt="" style="height:48px;width:auto">', url)

    @admin.display(description="Renditions")
    def rendition_previews(self, car: Car) -> str:
        rows = [
            (default_storage.url(entry["name"]), name, name, entry["width"], entry["height"])
            for name in get_platforms()
            if (entry := (car.renditions or {}).get(name))
        ]
        if not rows:
            return "—"
        return format_html_join(
            "",
            '<figure style="display:inline-block;margin:0 1em 1em 0">'
            '<img src="{}" alt="{}" style="max-width:320px;height:auto">'
            "<figcaption>{}: {}×{}</figcaption></figure>",
            rows,
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        bump_catalog_version()

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        bump_catalog_version()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        bump_catalog_version()

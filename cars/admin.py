from django.contrib import admin
from django.core.files.storage import default_storage
from django.utils.html import format_html, format_html_join

from .models import Car
from .pictures.platforms import get_platforms
from .search_engine import matching
from .services import car_save, cars_delete


def _rendition_url(car: Car, platform: str) -> str | None:
    entry = car.renditions.get(platform)
    return default_storage.url(entry["name"]) if entry else None


@admin.register(Car)
class CarAdmin(admin.ModelAdmin):
    list_display = ("thumbnail", "title", "image_status", "image_error", "updated_at")
    list_display_links = ("thumbnail", "title")
    list_filter = ("image_status", "image_error")
    search_fields = ("title", "description", "external_key")
    readonly_fields = (
        "external_key",
        "picture",
        "image_fetched_from",
        "image_status",
        "image_error",
        "image_error_message",
        "rendition_previews",
        "created_at",
        "updated_at",
    )
    exclude = ("legacy_image", "legacy_renditions")
    list_select_related = ("picture",)
    list_per_page = 50
    # Filled by the apps above the catalogue, which it does not know: imports.admin adds
    # "Retry failed images", since fetching pictures again is the importer's work.
    actions = []

    def get_search_results(self, request, queryset, search_term):
        """The admin's substring search on title, description and key, plus every car the
        API's search finds: accents folded, stems, and words within a typo or two."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term.strip():
            return found, may_have_duplicates
        searched = matching(Car.objects.all(), search_term).values("pk")
        return found | queryset.filter(pk__in=searched), may_have_duplicates

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
            if (entry := car.renditions.get(name))
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
        text_changed = not change or bool({"title", "description"} & set(form.changed_data))
        car_save(car=obj, text_changed=text_changed)

    def delete_model(self, request, obj):
        cars_delete(cars=Car.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        cars_delete(cars=queryset)

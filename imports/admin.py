"""Import jobs in the Django admin: read-only, with their rejected rows, image failures
and error readable at a glance. Jobs are started elsewhere (the command, the API, the
periodic sync), so there is no "add" here."""

from django.contrib import admin
from django.utils.html import format_html, format_html_join

from .jobs import job_summary
from .models import ImportJob

# A CSV can reject every one of a million rows; a page that long helps nobody.
MAX_TABLE_ROWS = 500


def _table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    if not rows:
        return "—"
    more = len(rows) - MAX_TABLE_ROWS
    table = format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<th>{}</th>", ((name,) for name in headers)),
        format_html_join("", "<tr>{}</tr>", ((_cells(row),) for row in rows[:MAX_TABLE_ROWS])),
    )
    if more > 0:
        table = format_html(
            "{}<p>… and {} more (all of them are in the imports API)</p>", table, more
        )
    return table


def _cells(row: tuple) -> str:
    return format_html_join("", "<td>{}</td>", ((value,) for value in row))


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "status",
        "trigger",
        "created_at",
        "finished_at",
        "counts_summary",
    )
    list_display_links = ("id", "source")
    list_filter = ("status", "trigger")
    search_fields = ("source",)
    date_hierarchy = "created_at"
    list_per_page = 50
    fields = (
        "source",
        "prune",
        "refresh_images",
        "status",
        "trigger",
        "created_by",
        "created_at",
        "started_at",
        "finished_at",
        "attempts",
        "counts_summary",
        "error",
        "warnings_list",
        "rejected_rows_table",
        "image_failures_table",
    )
    readonly_fields = fields

    @admin.display(description="Counts")
    def counts_summary(self, job: ImportJob) -> str:
        return job_summary(job) or "—"

    @admin.display(description="Warnings")
    def warnings_list(self, job: ImportJob) -> str:
        if not job.warnings:
            return "—"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((w,) for w in job.warnings))
        )

    @admin.display(description="Rejected rows")
    def rejected_rows_table(self, job: ImportJob) -> str:
        rows = [(r.get("line"), r.get("reason"), r.get("message")) for r in job.rejected_rows]
        return _table(("Line", "Reason", "Message"), rows)

    @admin.display(description="Image failures")
    def image_failures_table(self, job: ImportJob) -> str:
        rows = [
            (f.get("line"), f.get("key"), f.get("url"), f.get("reason"), f.get("message"))
            for f in job.image_failures
        ]
        return _table(("Line", "Key", "Image", "Reason", "Message"), rows)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a record of what happened: viewable, never edited

"""Import jobs in the Django admin: read-only, with their first rejected rows and image
failures (all of them: links to the imports API's pages and CSV download) and error
readable at a glance, and an "Import CSV" page that starts one from a URL or an uploaded
file. A job's page reloads itself while the job is queued or running.

Also the cars' "Retry failed images" action, which runs the importer's image phase."""

import codecs

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.validators import URLValidator
from django.shortcuts import redirect
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from cars.admin import CarAdmin

from .columns import MappingError, checked_map
from .dispatch import RETRY_IMAGES, run_or_send
from .jobs import submit_job
from .lifecycle import create_job
from .models import ImageChunk, ImportJob, ImportProblem
from .permissions import PRUNE, may_start_import
from .pictures import retry
from .selectors import job_summary, problems_summary
from .uploads import store_upload

# Seconds between reloads of a queued or running job's page.
REFRESH_SECONDS = 2


def _table(headers: tuple[str, ...], rows: list[tuple]) -> str:
    if not rows:
        return "—"
    return format_html(
        "<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
        format_html_join("", "<th>{}</th>", ((name,) for name in headers)),
        format_html_join("", "<tr>{}</tr>", ((_cells(row),) for row in rows)),
    )


def _problems(job: ImportJob, name: str, kind: str, headers: tuple[str, ...], rows: list[tuple]):
    """The job's first problems of a kind (what it keeps inline: a CSV may reject a
    million rows, and a page that long helps nobody), how many there are in all, and
    links to every stored one in the imports API (a staff session may read it)."""
    rows = rows[: settings.CARS_JOB_REPORT_PREVIEW]
    summary = problems_summary(job)
    tally = summary[name]
    table = _table(headers, rows)
    if not tally["stored"]:
        return table
    total = tally["stored"] + tally["not_stored"]
    errors = reverse("import-errors", args=[job.pk]) + f"?kind={kind}"
    csv = reverse("import-errors-csv", args=[job.pk]) + f"?kind={kind}"
    shown = format_html(
        '<p>The first {} of {}. All {} stored: <a href="{}">JSON pages</a>, '
        '<a href="{}" download>CSV download</a>.</p>',
        len(rows),
        total,
        tally["stored"],
        errors,
        csv,
    )
    if tally["not_stored"]:
        shown = format_html(
            "{}<p>{} more were not stored (over CARS_JOB_MAX_PROBLEMS, {} per job); "
            "<code>manage.py import_csv --report FILE</code> lists every one.</p>",
            shown,
            tally["not_stored"],
            summary["max_stored"],
        )
    return format_html("{}{}", table, shown)


def _cells(row: tuple) -> str:
    return format_html_join("", "<td>{}</td>", ((value,) for value in row))


class ImportCsvForm(forms.Form):
    """A CSV by URL or as a file, never both. The file is capped like any source."""

    url = forms.URLField(
        label="CSV URL",
        required=False,
        assume_scheme="https",
        max_length=2048,
        validators=[URLValidator(schemes=["http", "https"])],
        widget=forms.URLInput(attrs={"size": 80, "placeholder": "https://example.com/cars.csv"}),
    )
    file = forms.FileField(label="or a CSV file", required=False)
    map = forms.CharField(
        label="Columns",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60, "placeholder": "title={make} {model}"}),
        help_text="Only when the feed's columns are not recognised: one FIELD=COLUMN a line "
        "(fields: id, title, description, image), or a template of columns.",
    )
    encoding = forms.CharField(
        label="Encoding", required=False, help_text="Only when it is not detected, e.g. cp1252."
    )
    prune = forms.BooleanField(
        label="Delete the cars that are not in this CSV",
        required=False,
        help_text="Only once the whole file has been read without a fatal error.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        limit = filesizeformat(settings.CARS_CSV_MAX_BYTES)
        self.fields["file"].help_text = f"At most {limit} (CARS_CSV_MAX_BYTES)."

    def clean_file(self):
        upload = self.cleaned_data.get("file")
        if upload and upload.size > settings.CARS_CSV_MAX_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}, over the limit of "
                f"{filesizeformat(settings.CARS_CSV_MAX_BYTES)} (CARS_CSV_MAX_BYTES)."
            )
        return upload

    def clean_map(self) -> dict[str, str]:
        lines = [line.strip() for line in self.cleaned_data["map"].splitlines() if line.strip()]
        try:
            return checked_map(lines)
        except MappingError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_encoding(self) -> str:
        encoding = self.cleaned_data["encoding"].strip()
        if encoding:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise forms.ValidationError(f"Unknown encoding {encoding!r}.") from None
        return encoding

    def clean(self):
        data = super().clean()
        if not self.errors and bool(data.get("url")) == bool(data.get("file")):
            raise forms.ValidationError("Give either a URL or a file (one of them, not both).")
        return data


def _prune_allowed(form: ImportCsvForm, user) -> bool:
    """Pruning deletes cars: only for users who may delete them (else a form error)."""
    if may_start_import(user, prune=form.cleaned_data["prune"]):
        return True
    form.add_error("prune", f"Deleting cars needs the {PRUNE} permission.")
    return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "source",
        "status",
        "trigger",
        "created_at",
        "finished_at",
        "progress",
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
        "progress",
        "counts_summary",
        "pictures_summary",
        "error",
        "warnings_list",
        "rejected_rows_table",
        "image_failures_table",
    )
    readonly_fields = fields

    @admin.display(description="Counts")
    def counts_summary(self, job: ImportJob) -> str:
        return job_summary(job) or "—"

    @admin.display(description="Pictures")
    def progress(self, job: ImportJob) -> str:
        """Distinct pictures fetched and rendered (or failed) of those the job has."""
        if not job.images_total:
            return "—"
        return format_html(
            '<progress value="{}" max="{}"></progress> {} / {}',
            job.images_done,
            job.images_total,
            job.images_done,
            job.images_total,
        )

    @admin.display(description="New and shared pictures")
    def pictures_summary(self, job: ImportJob) -> str:
        if not job.pictures:
            return "—"
        return f"{job.pictures.get('new', 0)} new, {job.pictures.get('shared', 0)} shared"

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
        headers = ("Line", "Reason", "Message")
        return _problems(job, "rejected_rows", "rejected_row", headers, rows)

    @admin.display(description="Image failures")
    def image_failures_table(self, job: ImportJob) -> str:
        rows = [
            (f.get("line"), f.get("key"), f.get("url"), f.get("reason"), f.get("message"))
            for f in job.image_failures
        ]
        headers = ("Line", "Key", "Image", "Reason", "Message")
        return _problems(job, "image_failures", "image_failure", headers, rows)

    def has_add_permission(self, request) -> bool:
        return False  # the model form is never used: imports start on the Import CSV page

    def can_import(self, request) -> bool:
        return may_start_import(request.user)

    def get_urls(self):
        view = self.admin_site.admin_view(self.import_csv_view)
        return [
            path("import-csv/", view, name="imports_importjob_import_csv"),
            *super().get_urls(),
        ]

    def import_csv_view(self, request):
        """Start an import job (trigger "admin") and go to its page to watch it."""
        if not self.can_import(request):
            raise PermissionDenied
        posted = request.method == "POST"
        form = ImportCsvForm(request.POST, request.FILES) if posted else ImportCsvForm()
        if posted and form.is_valid() and _prune_allowed(form, request.user):
            data = form.cleaned_data
            source = data["url"] or store_upload(data["file"])
            job = create_job(
                source=source,
                prune=data["prune"],
                trigger=ImportJob.Trigger.ADMIN,
                user=request.user,
                column_map=data["map"],
                encoding=data["encoding"],
            )
            submit_job(job)
            self._report_start(request, job)  # a job that ended deleted its upload
            return redirect(reverse("admin:imports_importjob_change", args=[job.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": "Import CSV",
            "opts": self.model._meta,
            "form": form,
        }
        return TemplateResponse(request, "admin/imports/importjob/import_csv.html", context)

    def _report_start(self, request, job: ImportJob) -> None:
        job.refresh_from_db()  # without REDIS_URL it has already run
        if job.status == ImportJob.Status.SUCCEEDED:
            self.message_user(
                request, f"Import #{job.pk} succeeded: {job_summary(job)}", messages.SUCCESS
            )
        elif job.status == ImportJob.Status.FAILED:
            self.message_user(request, f"Import #{job.pk} failed: {job.error}", messages.ERROR)
        else:
            self.message_user(request, f"Import #{job.pk} is {job.status}: this page follows it.")

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_import_csv": self.can_import(request)}
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {}), "refresh_seconds": REFRESH_SECONDS}
        return super().change_view(request, object_id, form_url, extra_context)

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a record of what happened: viewable, never edited

    def get_deleted_objects(self, objs, request):
        """What deleting jobs takes with it: their problems and chunks are counted, not
        listed (Django loads and lists each, and a job may store 2 × CARS_JOB_MAX_PROBLEMS
        problems; deleting them is one DELETE, as neither has signals nor dependants)."""
        jobs = list(objs)
        listed = [
            format_html(
                'Import job: <a href="{}">{}</a>',
                reverse("admin:imports_importjob_change", args=[job.pk]),
                job,
            )
            for job in jobs
        ]
        counts = {ImportJob._meta.verbose_name_plural: len(jobs)}
        for model in (ImportProblem, ImageChunk):
            if found := model.objects.filter(job__in=jobs).count():
                counts[model._meta.verbose_name_plural] = found
                listed.append(f"{found} {model._meta.verbose_name_plural}")
        refused = set() if self.has_delete_permission(request) else {ImportJob._meta.verbose_name}
        return listed, counts, refused, []


@admin.action(description="Retry failed images", permissions=["change"])
def retry_failed_images(modeladmin: CarAdmin, request, queryset) -> None:
    ids = list(retry.with_failed_images(queryset).values_list("pk", flat=True))
    if not ids:
        modeladmin.message_user(
            request, "None of the selected cars has a failed image.", messages.WARNING
        )
        return
    outcome = run_or_send(RETRY_IMAGES, lambda ids: retry.retry_failed_images(car_ids=ids), ids)
    if outcome is None:
        modeladmin.message_user(
            request,
            f"Retrying the images of {len(ids)} car(s) on a worker: reload to see them.",
            messages.INFO,
        )
        return
    level = messages.SUCCESS if not (outcome.failed or outcome.skipped) else messages.WARNING
    modeladmin.message_user(
        request, f"Retried the images of {len(ids)} car(s): {outcome.summary()}.", level
    )


CarAdmin.actions.append(retry_failed_images)  # cars.admin cannot import the importer

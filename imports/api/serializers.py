"""Shapes of the imports API (SPEC §6): the request that starts a job, and a job."""

import codecs
from dataclasses import asdict
from urllib.parse import urlsplit

from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cars.pictures.reasons import ImageReason
from core.serializers import ErrorSerializer  # noqa: F401  (re-exported for the views)
from imports.columns import MappingError, checked_map
from imports.models import ImportJob, ImportProblem
from imports.row_reasons import RowReason
from imports.selectors import counts_of, problems_summary

LOCAL_PATH = "a local path is not accepted from the API: source must be an http(s) URL"


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "false" are mistakes worth a 400, not a guess."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid")


@extend_schema_field({"type": "object", "additionalProperties": {"type": "string"}})
class ColumnMapField(serializers.DictField):
    """{field: column or template}; its values are checked as a whole (validate_map), so
    that any error is one message, like every other field's."""


class ImportRequestSerializer(serializers.Serializer):
    """Start an import. Unknown keys are refused rather than ignored, so a misspelt option
    (or `dry_run`, which only the command has) never starts an import nobody asked for."""

    source = serializers.CharField(
        max_length=2048, help_text="http(s) URL of the CSV; local paths are refused"
    )
    prune = StrictBooleanField(
        default=False, help_text="delete cars whose key is not in the source"
    )
    refresh_images = StrictBooleanField(
        default=False, help_text="re-download image URLs that did not change"
    )
    map = ColumnMapField(
        required=False,
        default=dict,
        help_text='the column of a field, or a template of columns: {"title": "{make} {model}"}'
        " (fields: id, title, description, image)",
    )
    encoding = serializers.CharField(
        max_length=64,
        required=False,
        default="",
        allow_blank=True,
        help_text="the CSV's encoding; default: detected",
    )

    def validate_map(self, value: dict) -> dict:
        # Checked here as a whole, so that an error is one message like any field's.
        if any(len(str(column)) > 1000 for column in value.values()):
            raise serializers.ValidationError("a column or template is at most 1000 characters")
        try:
            return checked_map(value)
        except MappingError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate_encoding(self, value: str) -> str:
        if value:
            try:
                codecs.lookup(value)
            except LookupError:
                raise serializers.ValidationError(f"unknown encoding {value!r}") from None
        return value

    def validate_source(self, value: str) -> str:
        parts = urlsplit(value)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise serializers.ValidationError("source must be an http(s) URL with a host")
            return value
        if scheme in ("", "file") or len(scheme) == 1:  # one letter: a Windows drive
            raise serializers.ValidationError(LOCAL_PATH)
        raise serializers.ValidationError(f"source must be an http(s) URL, not {scheme}:")

    def validate(self, attrs: dict) -> dict:
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {name: "Unknown field." for name in unknown}, code="unknown_field"
            )
        return attrs


class CountsSerializer(serializers.Serializer):
    """The `--report` counts; every key is present (zeros while the job has not run)."""

    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    deleted = serializers.IntegerField()
    rejected = serializers.IntegerField()
    images_ok = serializers.IntegerField()
    images_failed = serializers.IntegerField()

    def to_representation(self, instance):
        return super().to_representation(asdict(counts_of(instance)))


def _codes(reasons) -> str:
    return "one of " + ", ".join(reason.value for reason in reasons)


class RejectedRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="CSV line the record starts on (header: 1)")
    reason = serializers.CharField(help_text=_codes(RowReason))
    message = serializers.CharField()


class ImageFailureSerializer(serializers.Serializer):
    line = serializers.IntegerField(help_text="CSV line of the car's row")
    key = serializers.CharField(help_text="the car's natural key")
    url = serializers.CharField(help_text="the image as the CSV names it")
    reason = serializers.CharField(help_text=_codes(ImageReason))
    message = serializers.CharField()


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField(help_text="distinct pictures fetched and rendered or failed")
    total = serializers.IntegerField(
        help_text="distinct pictures to fetch (known once rows are applied)"
    )


class PicturesSerializer(serializers.Serializer):
    new = serializers.IntegerField(help_text="cars whose picture this import stored")
    shared = serializers.IntegerField(help_text="cars whose picture was stored already")


class ProblemTallySerializer(serializers.Serializer):
    stored = serializers.IntegerField(help_text="kept by the job: listed at `url`")
    not_stored = serializers.IntegerField(
        help_text="over `max_stored`: in the counts, listed nowhere but `import_csv --report`"
    )


class ProblemsSerializer(serializers.Serializer):
    rejected_rows = ProblemTallySerializer()
    image_failures = ProblemTallySerializer()
    max_stored = serializers.IntegerField(
        help_text="problems of each kind a job keeps (CARS_JOB_MAX_PROBLEMS)"
    )
    truncated = serializers.BooleanField(
        help_text="`rejected_rows` or `image_failures` list fewer than the job had"
    )
    url = serializers.URLField(help_text="every stored problem, paged (JSON)")
    csv_url = serializers.URLField(help_text="every stored problem, as a CSV download")


class ProblemSerializer(serializers.Serializer):
    """A stored problem of a job: a rejected row (no key nor url) or an image failure."""

    kind = serializers.ChoiceField(choices=[kind.label for kind in ImportProblem.Kind])
    line = serializers.IntegerField(help_text="CSV line the record starts on (header: 1)")
    key = serializers.CharField(allow_null=True, help_text="the car's natural key")
    url = serializers.CharField(allow_null=True, help_text="the image as the CSV names it")
    reason = serializers.CharField(help_text=_codes([*RowReason, *ImageReason]))
    message = serializers.CharField()

    def to_representation(self, problem: dict) -> dict:
        image = problem["kind"] == ImportProblem.Kind.IMAGE_FAILURE
        return {
            "kind": ImportProblem.Kind(problem["kind"]).label,
            "line": problem["line"],
            "key": problem["key"] if image else None,
            "url": problem["url"] if image else None,
            "reason": problem["reason"],
            "message": problem["message"],
        }


class FeedSerializer(serializers.Serializer):
    encoding = serializers.CharField(required=False, help_text="the source's, as read")
    mapping = serializers.DictField(
        required=False, help_text="field -> column or template, and the attribute columns"
    )


class ImportJobSerializer(serializers.Serializer):
    """An import job: its state and, once finished, what it did (the `--report` shapes).

    Its lists hold the first CARS_JOB_REPORT_PREVIEW problems of each kind; `problems`
    says how many there are and where to read them all."""

    id = serializers.IntegerField()
    source = serializers.CharField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = CountsSerializer()
    rejected_rows = RejectedRowSerializer(many=True, help_text="the first ones, in line order")
    image_failures = ImageFailureSerializer(many=True, help_text="the first ones, in line order")
    error = serializers.CharField(help_text="why a failed job failed; empty otherwise")
    progress = serializers.SerializerMethodField()
    pictures = serializers.SerializerMethodField()
    problems = serializers.SerializerMethodField()
    map = serializers.DictField(
        source="column_map", child=serializers.CharField(), help_text="as it was asked for"
    )
    encoding = serializers.CharField(help_text="as it was asked for; empty: detected")
    feed = FeedSerializer(help_text="how the source was read: empty until its rows are")

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job: dict) -> dict:
        return {"done": job["images_done"], "total": job["images_total"]}

    @extend_schema_field(PicturesSerializer)
    def get_pictures(self, job: dict) -> dict:
        pictures = job.get("pictures") or {}
        return {"new": pictures.get("new", 0), "shared": pictures.get("shared", 0)}

    @extend_schema_field(ProblemsSerializer)
    def get_problems(self, job: dict) -> dict:
        request = self.context.get("request")

        def url(name: str) -> str:
            path = reverse(name, args=[job["id"]])
            return request.build_absolute_uri(path) if request is not None else path

        return {
            **problems_summary(job),
            "url": url("import-errors"),
            "csv_url": url("import-errors-csv"),
        }

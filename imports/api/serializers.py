"""Shapes of the imports API (SPEC §6): the request that starts a job, and a job."""

from dataclasses import asdict
from urllib.parse import urlsplit

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.serializers import ErrorSerializer  # noqa: F401  (re-exported for the views)
from imports.models import ImportJob
from imports.pictures.reasons import ImageReason, RowReason
from imports.selectors import counts_of

LOCAL_PATH = "a local path is not accepted from the API: source must be an http(s) URL"


class StrictBooleanField(serializers.BooleanField):
    """JSON true or false only: "yes", 1 or "false" are mistakes worth a 400, not a guess."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid")


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


class ImportJobSerializer(serializers.Serializer):
    """An import job: its state and, once finished, what it did (the `--report` shapes)."""

    id = serializers.IntegerField()
    source = serializers.CharField()
    status = serializers.ChoiceField(choices=ImportJob.Status.choices)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = CountsSerializer()
    rejected_rows = RejectedRowSerializer(many=True)
    image_failures = ImageFailureSerializer(many=True)
    error = serializers.CharField(help_text="why a failed job failed; empty otherwise")
    progress = serializers.SerializerMethodField()
    pictures = serializers.SerializerMethodField()

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job: dict) -> dict:
        return {"done": job["images_done"], "total": job["images_total"]}

    @extend_schema_field(PicturesSerializer)
    def get_pictures(self, job: dict) -> dict:
        pictures = job.get("pictures") or {}
        return {"new": pictures.get("new", 0), "shared": pictures.get("shared", 0)}

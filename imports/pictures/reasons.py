"""The one vocabulary of reason codes (SPEC §3, §4).

Row reasons explain why a CSV row was rejected; image reasons explain why a car has no
image. The fetcher, the importer's report, the API and the metrics all use these values.
"""

from enum import StrEnum


class RowReason(StrEnum):
    MISSING_TITLE = "missing_title"
    TITLE_TOO_LONG = "title_too_long"
    DUPLICATE_KEY = "duplicate_key"
    FIELD_COUNT = "field_count"


class ImageReason(StrEnum):
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    BLOCKED_ADDRESS = "blocked_address"
    BLOCKED_PATH = "blocked_path"
    UNREACHABLE = "unreachable"
    HTTP_ERROR = "http_error"
    TOO_MANY_REDIRECTS = "too_many_redirects"
    TOO_LARGE = "too_large"
    INVALID_IMAGE = "invalid_image"
    TOO_MANY_PIXELS = "too_many_pixels"
    STORAGE_ERROR = "storage_error"


IMAGE_REASON_TEXT: dict[str, str] = {
    ImageReason.UNSUPPORTED_SCHEME: "the image address is not http or https",
    ImageReason.BLOCKED_ADDRESS: "the image address points at a private or local network",
    ImageReason.BLOCKED_PATH: (
        "the image path is outside the CSV's folder, or the CSV came from a URL or an upload"
    ),
    ImageReason.UNREACHABLE: "the image server could not be reached in time",
    ImageReason.HTTP_ERROR: "the image server answered with an error",
    ImageReason.TOO_MANY_REDIRECTS: "the image address redirects too many times",
    ImageReason.TOO_LARGE: "the image file is too large",
    ImageReason.INVALID_IMAGE: "the file is not a JPEG, PNG, WebP or GIF image",
    ImageReason.TOO_MANY_PIXELS: "the image has too many pixels",
    ImageReason.STORAGE_ERROR: "the image could not be stored",
}


class FetchError(Exception):
    """A fetch or image check failed for a known reason."""

    def __init__(self, reason: ImageReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):
        # Outcomes travel back from the render processes pickled.
        return (type(self), (self.reason, self.message))

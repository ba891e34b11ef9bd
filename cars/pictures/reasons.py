"""Why a car has no picture: the image reason codes (SPEC §4), defined once.

The fetcher and the checks raise them, the importer's report and the metrics count them,
the API filters on them and the gallery says them in words. Why a CSV row was rejected
is the importer's own vocabulary (imports.row_reasons).

No Django here: the fetcher imports this from its threads.
"""

from enum import StrEnum


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

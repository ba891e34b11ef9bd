"""Why a CSV row was rejected: the row reason codes (SPEC §3), defined once.

The CSV reader gives them, the importer's report counts them and the API documents
them. Why a car has no picture is the catalogue's vocabulary (cars.pictures.reasons).
"""

from enum import StrEnum


class RowReason(StrEnum):
    MISSING_TITLE = "missing_title"
    TITLE_TOO_LONG = "title_too_long"
    DUPLICATE_KEY = "duplicate_key"
    FIELD_COUNT = "field_count"

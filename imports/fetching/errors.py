"""The one exception of getting bytes: a fetch, or a check of what it fetched, failed.

It carries an image reason code (cars.pictures.reasons) and a message for the report.
"""

from cars.pictures.reasons import ImageReason


class FetchError(Exception):
    """A fetch or image check failed for a known reason."""

    def __init__(self, reason: ImageReason, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __reduce__(self):
        # Outcomes travel back from the render processes pickled.
        return (type(self), (self.reason, self.message))

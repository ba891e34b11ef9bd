"""URLs of stored renditions, from the names stored on the car: no storage round trip.

Used by every page that lists cars (the API, the gallery), so it is cheap per item: the
storage's URL prefix is asked once per instance: `S3Storage.url()` is costly per call
(botocore builds a presigned URL then strips it).
"""

import re
from collections.abc import Callable

from django.core.files.storage import default_storage

# Stored names are made of these characters only (content-hashed, get_valid_filename'd),
# so every storage spells their URL as its prefix plus the name, unescaped.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_./-]+")
_PROBE = "probe/name.jpg"


class RenditionUrls:
    """With `absolute` (e.g. `request.build_absolute_uri`), URLs are absolute."""

    def __init__(self, absolute: Callable[[str], str] | None = None):
        self._absolute = absolute
        probe = self._full(_PROBE)
        self._prefix = probe[: -len(_PROBE)] if probe.endswith(_PROBE) else None

    def _full(self, name: str) -> str:
        url = default_storage.url(name)
        if self._absolute is None or url.startswith(("http://", "https://")):
            return url
        return self._absolute(url)

    def url(self, name: str) -> str:
        if self._prefix is not None and _PLAIN_NAME.fullmatch(name):
            return self._prefix + name
        return self._full(name)

    def rendition(self, renditions: dict, platform: str) -> dict | None:
        """`{"url", "width", "height"}` of one platform's rendition, or None."""
        entry = (renditions or {}).get(platform)
        if not entry:
            return None
        return {"url": self.url(entry["name"]), "width": entry["width"], "height": entry["height"]}

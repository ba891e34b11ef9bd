"""The anonymous rate limit (CARS_ANON_RATE), keyed on the client's real address.

DRF's AnonRateThrottle keys on the whole `X-Forwarded-For` header unless told how many
proxies to trust, so a client that writes a new first entry each time is never limited.
These key on `core.clientip.client_ip` (CARS_NUM_PROXIES) instead.
"""

from django.conf import settings
from rest_framework.throttling import AnonRateThrottle

from .clientip import client_ip


class AnonThrottle(AnonRateThrottle):
    """The API's anonymous throttle (REST_FRAMEWORK's DEFAULT_THROTTLE_CLASSES)."""

    def get_ident(self, request) -> str:
        return client_ip(request)


class GalleryThrottle(AnonThrottle):
    """The gallery's searches cost what the API's do: the same rate per client, counted
    apart from the API's (scope "gallery")."""

    scope = "gallery"

    def get_rate(self) -> str | None:
        return settings.CARS_ANON_RATE or None

"""The client's address, as every rate limit of the project reads it.

DRF's rule with `NUM_PROXIES` (its throttles are configured with CARS_NUM_PROXIES): the
proxies in front append the address they saw to `X-Forwarded-For`, so the client is
CARS_NUM_PROXIES entries from the right; entries further left were written by the client
and are never trusted. With no proxy (0) the client is the peer address.
"""

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    remote = request.META.get("REMOTE_ADDR", "")
    proxies = settings.CARS_NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote
    addresses = forwarded.split(",")
    return addresses[-min(proxies, len(addresses))].strip()

"""The SSRF guard: connections go only to addresses that were checked.

Everything a CSV names is untrusted, so unless told otherwise a fetch refuses to talk to
private or local networks, whatever spelling or DNS trick names them.

How it works: httpx's connection pool asks a *network backend* to open each
TCP connection. Ours (`GuardedBackend`) resolves the host once, checks every address it
got, and connects to one of those checked addresses, so a DNS answer that changes between
a check and the connect (DNS rebinding) cannot slip through. The URL keeps its hostname,
which means the `Host` header, TLS SNI and certificate verification all use the real name,
and the pool keys connections by hostname, so a TLS connection made for one name is never
reused for another name that happens to share an IP address. Every redirect hop that
needs a new connection goes through the same backend; a reused connection was checked
when it was opened.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import ssl
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpcore
import httpx

from cars.pictures.reasons import ImageReason

from .deadline import DeadlineStream, within_deadline
from .errors import FetchError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
"""(host, port) -> IP address strings; raises OSError (socket.gaierror) when unresolvable."""
AddressPolicy = Callable[[IPAddress], bool]
"""Says whether an address may be connected to when private addresses are not allowed."""


# --- addresses -----------------------------------------------------------------------------

_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")


def is_public_address(ip: IPAddress) -> bool:
    """True when `ip` is a globally routable unicast address, safe to fetch from.

    `is_global` already excludes loopback, RFC 1918, link-local, 100.64/10, 0.0.0.0/8,
    documentation and reserved ranges; multicast, site-local and the reserved IPv6 blocks
    are refused on top. IPv6 forms that carry an IPv4 address (`::ffff:a.b.c.d`, NAT64
    `64:ff9b::a.b.c.d`) are judged by that IPv4 address, and 6to4 must be public both ways.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return is_public_address(ip.ipv4_mapped)
        if ip in _NAT64_PREFIX:
            return is_public_address(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None and not is_public_address(ip.sixtofour):
            return False
        if ip.is_site_local:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved)


def resolve_host(host: str, port: int) -> list[str]:
    """Resolve with the operating system, as a plain connect would; IP spellings such as
    `2130706433` or `0x7f.1` come back normalised, so the checks see the real address."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


# --- the guarded network backend -----------------------------------------------------------


class GuardedBackend(httpcore.NetworkBackend):
    """Opens TCP connections only to addresses that passed the SSRF check."""

    def __init__(self, *, allow_private: bool, resolver: Resolver, address_policy: AddressPolicy):
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._resolver = resolver
        self._address_policy = address_policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self._checked_addresses(host, port)
        last_error: Exception | None = None
        for address in addresses:  # the first that accepts wins, like a plain connect
            try:
                stream = within_deadline(
                    lambda t, a=address: self._inner.connect_tcp(
                        a, port, t, local_address, socket_options
                    ),
                    timeout,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
                continue
            return DeadlineStream(stream)
        assert last_error is not None  # _checked_addresses never returns an empty list
        raise last_error

    def _checked_addresses(self, host: str, port: int) -> list[str]:
        try:
            addresses = list(self._resolver(host, port))
        except OSError as exc:
            raise FetchError(
                ImageReason.UNREACHABLE, f"could not resolve host {host!r}: {exc}"
            ) from exc
        if not addresses:
            raise FetchError(ImageReason.UNREACHABLE, f"host {host!r} has no address")
        if not self._allow_private:
            for address in addresses:
                if not self._address_policy(ipaddress.ip_address(address)):
                    raise FetchError(
                        ImageReason.BLOCKED_ADDRESS,
                        f"host {host!r} resolves to {address}, a private or local address",
                    )
        return addresses


def _shared_ssl_context() -> ssl.SSLContext:
    """certifi's CAs, or SSL_CERT_FILE / SSL_CERT_DIR when set: one context per value.

    Building a context loads the whole CA bundle, and httpx did it twice per Fetcher. A
    context is safe to share between threads and connections; it is keyed by the variables
    httpx reads, so changing SSL_CERT_FILE still takes effect.
    """
    return _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.lru_cache(maxsize=8)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    return httpx.create_ssl_context()


class GuardedTransport(httpx.HTTPTransport):
    """httpx's own transport, with its connection pool built on `GuardedBackend`.

    httpx 0.28 has no public parameter for the network backend (encode/httpx#3749), so
    the pool httpx built is replaced by an equivalent one that uses ours. The SSRF tests
    fail loudly should a future httpx stop using `_pool`.
    """

    def __init__(self, backend: httpcore.NetworkBackend, limits: httpx.Limits):
        ssl_context = _shared_ssl_context()
        super().__init__(verify=ssl_context, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )

"""The HTTP client: a fetch is one GET, its redirects and its retries, under one deadline.

Redirects are followed here, not by httpx, so that every hop is checked again (scheme,
loops, count) and any new connection it needs goes through the guard. Connect errors,
timeouts, 429 and 5xx answers are retried with backoff while the fetch's deadline lasts.
Whatever goes wrong ends as a `FetchError` whose reason the caller records.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import httpx

from cars.pictures.reasons import ImageReason

from .deadline import (
    Budget,
    Deadline,
    DeadlineExceeded,
    FetchBudget,
    current_deadline,
)
from .decoding import ACCEPT_ENCODING, capped_raw, content_codings, decode
from .errors import FetchError
from .guard import (
    AddressPolicy,
    GuardedBackend,
    GuardedTransport,
    Resolver,
    is_public_address,
    resolve_host,
)

ALLOWED_SCHEMES = frozenset({"http", "https"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# A redirect or error body is read (and dropped) up to this size so that the connection
# can go back to the pool; anything bigger is cheaper to abandon with its connection.
_DRAIN_LIMIT = 64 * 1024


@dataclass(frozen=True)
class FetchPolicy:
    """Limits for one kind of fetch; built from settings by the caller."""

    timeout: float = 30.0
    """Connect and read timeouts, and a hard deadline for each whole HTTP request."""
    deadline: float | None = None
    """Seconds for a whole fetch: every redirect hop, every retry and the pauses between
    them. None: twice `timeout` (see `deadline_seconds`)."""
    max_bytes: int = 20_000_000
    allow_private: bool = False
    max_redirects: int = 5
    retries: int = 2
    """Extra attempts after connect errors, timeouts, 429 and 5xx answers."""
    backoff: float = 0.5
    """Seconds before the first retry, doubled for each further one."""
    user_agent: str = "image_backend/0.1"

    @property
    def deadline_seconds(self) -> float:
        """Without it, retries and redirects multiply `timeout`: at the defaults (30 s,
        2 retries, 5 redirects) one image could hold a worker for about 9 minutes."""
        return 2 * self.timeout if self.deadline is None else self.deadline


@dataclass(frozen=True)
class FetchResult:
    url: str
    """The final URL, after redirects."""
    status: int
    """A 2xx status, or 304 when a conditional request found the resource unchanged."""
    content: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None


# --- the fetcher -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Redirect:
    location: str


class _Transient(Exception):
    """A failure worth retrying; carries the error to raise when retries run out."""

    def __init__(self, error: FetchError, retry_after: float | None = None):
        super().__init__(error.message)
        self.error = error
        self.retry_after = retry_after


class Fetcher:
    """One httpx.Client shared by many threads, so connections to a host are reused.

    Use as a context manager, or call `close()`.
    """

    def __init__(
        self,
        policy: FetchPolicy,
        *,
        max_connections: int = 16,
        resolver: Resolver = resolve_host,
        address_policy: AddressPolicy = is_public_address,
    ):
        self.policy = policy
        backend = GuardedBackend(
            allow_private=policy.allow_private, resolver=resolver, address_policy=address_policy
        )
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.Client(
            transport=GuardedTransport(backend, limits),
            # No pool timeout: a thread waiting for a free connection is not the server's
            # fault, and every request holding one is bounded by its own deadline.
            timeout=httpx.Timeout(policy.timeout, pool=None),
            follow_redirects=False,  # each hop is checked by fetch()
            trust_env=False,  # a proxy from the environment would bypass the guard
            headers={"User-Agent": policy.user_agent, "Accept-Encoding": ACCEPT_ENCODING},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def fetch(self, url: str, *, headers: Mapping[str, str] | None = None) -> FetchResult:
        """GET `url`, following at most `policy.max_redirects` redirects, all within
        `policy.deadline_seconds`.

        Raises FetchError with the reason a caller can record; `headers` (for example
        If-None-Match) are sent on every hop.
        """
        current = _parse_http_url(url)
        seen = {str(current)}
        budget = FetchBudget(self.policy.deadline_seconds)
        for redirects in range(self.policy.max_redirects + 1):
            outcome = self._get_with_retries(current, headers or {}, budget)
            if isinstance(outcome, FetchResult):
                return outcome
            if redirects == self.policy.max_redirects:
                break
            current = _parse_http_url(str(current.join(outcome.location)))
            if str(current) in seen:
                raise FetchError(
                    ImageReason.TOO_MANY_REDIRECTS, f"{url} redirects in a loop via {current}"
                )
            seen.add(str(current))
        raise FetchError(
            ImageReason.TOO_MANY_REDIRECTS,
            f"{url} redirects more than {self.policy.max_redirects} times",
        )

    def _get_with_retries(
        self, url: httpx.URL, headers: Mapping[str, str], budget: FetchBudget
    ) -> FetchResult | _Redirect:
        """One hop, retried with exponential backoff on transient failures, as long as
        the fetch's budget lasts: a pause that would end past it is not waited for."""
        for attempt in range(self.policy.retries + 1):
            try:
                return self._get_once(url, headers, budget)
            except _Transient as transient:
                if attempt == self.policy.retries:
                    raise transient.error from None
                budget.last_error = transient.error.message.removeprefix(f"{url}: ")
                delay = self._retry_delay(attempt, transient.retry_after)
                if delay >= budget.remaining():
                    raise FetchError(
                        ImageReason.UNREACHABLE, f"{url}: {budget.exceeded()}"
                    ) from None
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_delay(self, attempt: int, retry_after: float | None) -> float:
        """Backoff doubles per attempt; a server's Retry-After is honoured, but capped so a
        hostile or confused server cannot stall an import."""
        if retry_after is not None:
            return min(retry_after, 4 * self.policy.backoff)
        return self.policy.backoff * 2**attempt

    def _get_once(
        self, url: httpx.URL, headers: Mapping[str, str], budget: FetchBudget
    ) -> FetchResult | _Redirect:
        """A single HTTP request under a hard deadline, with errors mapped to reasons."""
        token = current_deadline.set(Deadline(Budget(self.policy.timeout), budget))
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return self._handle_response(url, response)
        except DeadlineExceeded as exc:
            raise FetchError(ImageReason.UNREACHABLE, f"{url}: {exc}") from None
        except httpx.TimeoutException as exc:
            error = FetchError(
                ImageReason.UNREACHABLE, f"{url}: timed out after {self.policy.timeout:g} s"
            )
            raise _Transient(error) from exc
        except httpx.ConnectError as exc:
            error = FetchError(ImageReason.UNREACHABLE, f"{url}: cannot connect ({exc})")
            raise _Transient(error) from exc
        except httpx.TransportError as exc:  # the connection broke mid-answer
            error = FetchError(ImageReason.UNREACHABLE, f"{url}: {type(exc).__name__} ({exc})")
            raise _Transient(error) from exc
        finally:
            current_deadline.reset(token)

    def _handle_response(self, url: httpx.URL, response: httpx.Response) -> FetchResult | _Redirect:
        status = response.status_code
        if status in REDIRECT_STATUSES:
            location = response.headers.get("Location")
            if not location:
                raise FetchError(ImageReason.HTTP_ERROR, f"{url}: HTTP {status} without Location")
            _drain(response)
            return _Redirect(location)
        if status == 429 or status >= 500:
            _drain(response)
            error = FetchError(ImageReason.HTTP_ERROR, f"{url}: HTTP {status}")
            raise _Transient(error, _retry_after_seconds(response))
        if status == 304:
            return _result(url, response, b"")
        if not 200 <= status < 300:
            _drain(response)
            raise FetchError(ImageReason.HTTP_ERROR, f"{url}: HTTP {status}")
        return _result(url, response, self._read_capped(url, response))

    def _read_capped(self, url: httpx.URL, response: httpx.Response) -> bytes:
        """The decoded body, refused as soon as it is known to exceed max_bytes: from
        Content-Length when the server sends one, else by counting what arrives.

        The cap counts decoded bytes, and decoding proceeds `_DECODE_STEP` bytes at a time,
        so a compression bomb is refused having cost about `max_bytes` of memory. The bytes
        on the wire are capped too (with room for the few bytes compression adds to data it
        cannot shrink), so that a stream of empty gzip members cannot run on forever.
        """
        limit = self.policy.max_bytes
        codings = content_codings(url, response)
        # Deflate stores what it cannot shrink with 5 bytes per 64 KiB block, and gzip adds
        # a header and a trailer: 1/64 and 1 KiB per layer are room enough.
        wire_limit = limit if not codings else limit + limit // 64 + 1024 * len(codings)
        declared = _content_length(response)
        if declared is not None and declared > wire_limit:
            raise FetchError(
                ImageReason.TOO_LARGE, f"{url}: Content-Length {declared} is over {limit} bytes"
            )
        raw = capped_raw(url, response, wire_limit)
        chunks: list[bytes] = []
        received = 0
        for chunk in decode(url, raw, codings):
            received += len(chunk)
            if received > limit:
                chunks.clear()  # now, not whenever the exception and its frames go
                decoded = f" once decoded ({', '.join(codings)})" if codings else ""
                raise FetchError(
                    ImageReason.TOO_LARGE, f"{url}: body is over {limit} bytes{decoded}"
                )
            chunks.append(chunk)
        return b"".join(chunks)


def _parse_http_url(url: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise FetchError(ImageReason.UNSUPPORTED_SCHEME, f"{url!r} is not a valid URL") from exc
    if parsed.scheme not in ALLOWED_SCHEMES:
        raise FetchError(
            ImageReason.UNSUPPORTED_SCHEME, f"{url!r}: only http and https URLs are fetched"
        )
    if not parsed.host:
        raise FetchError(ImageReason.UNSUPPORTED_SCHEME, f"{url!r} has no host")
    return parsed


def _result(url: httpx.URL, response: httpx.Response, content: bytes) -> FetchResult:
    return FetchResult(
        url=str(url),
        status=response.status_code,
        content=content,
        content_type=response.headers.get("Content-Type"),
        etag=response.headers.get("ETag"),
        last_modified=response.headers.get("Last-Modified"),
    )


def _content_length(response: httpx.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After in its seconds form; the HTTP-date form is ignored (plain backoff)."""
    try:
        return max(0.0, float(response.headers["Retry-After"]))
    except (KeyError, ValueError):
        return None


def _drain(response: httpx.Response) -> None:
    """Read a small unwanted body so the connection can be reused; give up on big ones.

    Read as it is on the wire: nobody looks at it, so nothing is decompressed.
    """
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > _DRAIN_LIMIT:
            return

"""Deadlines: one for each HTTP request, one for each whole fetch.

httpx's timeouts bound each socket operation, not a request: a server that sends a byte
just before every read timeout could trickle on for ever (slow-loris). And one fetch is
several requests (redirect hops, retries and the pauses between them), so bounds per
request add up: about 9 minutes per image at the defaults. So every socket operation of a
request is cut to what is left of two budgets, the request's (`FetchPolicy.timeout`) and
the whole fetch's (`FetchPolicy.deadline_seconds`), whichever ends first.

The client sets both around each request; `DeadlineStream` applies them to the sockets
that the guarded network backend opens.
"""

from __future__ import annotations

import contextvars
import ssl
import time
from collections.abc import Callable
from typing import Any, TypeVar

import httpcore

T = TypeVar("T")


class DeadlineExceeded(Exception):
    """A time budget ran out: the request's (a server trickling bytes slowly) or the whole
    fetch's (slow hops and retries adding up). Either way the fetch is over."""


class Budget:
    """A time budget, started on first network use rather than when it is made, so that
    waiting for a free pooled connection does not eat into it."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._ends_at: float | None = None

    def remaining(self) -> float:
        now = time.monotonic()
        if self._ends_at is None:
            self._ends_at = now + self.seconds
        return self._ends_at - now


class FetchBudget(Budget):
    """The deadline of one whole fetch, shared by all its hops and attempts."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.last_error: str | None = None
        """Why the previous attempt failed, when one did: said when time runs out."""

    def exceeded(self) -> str:
        message = (
            f"timed out: no complete answer within the {self.seconds:g} s deadline for the "
            "whole fetch (redirects and retries included)"
        )
        return message if self.last_error is None else f"{message}; before: {self.last_error}"


class Deadline:
    """What bounds one HTTP request: its own budget (`timeout`) and its fetch's."""

    def __init__(self, request: Budget, fetch: FetchBudget):
        self.request = request
        self.fetch = fetch
        self.answering = False
        """Set once the server has sent anything back."""


# Set around each request by Fetcher. httpx's sync client does all I/O on the calling
# thread, so a context variable reaches the sockets of exactly that request.
current_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "fetch_deadline", default=None
)


def within_deadline(operation: Callable[[float | None], T], timeout: float | None) -> T:
    """Run a socket operation with its `timeout` cut to what is left of the request's and
    the fetch's budgets.

    When that cut makes it time out after the server has started answering, it is reported
    as `DeadlineExceeded`: a server that trickles bytes is not asked again, whereas one
    that never answered (an ordinary timeout) is retried like a connect error. When the
    fetch's budget is what ran out, there is no time for anything else: that is final too.
    """
    deadline = current_deadline.get()
    if deadline is None:
        return operation(timeout)
    request_left = deadline.request.remaining()
    fetch_left = deadline.fetch.remaining()
    remaining = min(request_left, fetch_left)
    if timeout is not None and timeout < remaining:
        return operation(timeout)
    try:
        if remaining <= 0:
            raise httpcore.TimeoutException("the request's time is up")
        return operation(remaining)
    except httpcore.TimeoutException:
        if fetch_left <= request_left:
            raise DeadlineExceeded(deadline.fetch.exceeded()) from None
        if not deadline.answering:
            raise
        raise DeadlineExceeded(
            f"no complete answer within {deadline.request.seconds:g} s"
        ) from None


class DeadlineStream(httpcore.NetworkStream):
    """Applies the current request's deadline to every socket operation."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = within_deadline(lambda t: self._inner.read(max_bytes, t), timeout)
        deadline = current_deadline.get()
        if data and deadline is not None:
            deadline.answering = True
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        within_deadline(lambda t: self._inner.write(buffer, t), timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = within_deadline(
            lambda t: self._inner.start_tls(ssl_context, server_hostname, t), timeout
        )
        return DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

"""A real local HTTP server for tests, with routes registered per test.

Tests talk to it over real sockets (127.0.0.1, a free port), so the code under test runs
exactly as in production: connection pooling, timeouts, redirects, retries. Each route can
misbehave in the ways the outside world does: slow answers, bodies trickled byte by byte,
transient 503s, lying Content-Length, redirects.

    server.add("/car.jpg", body=jpeg_bytes, headers={"Content-Type": "image/jpeg"})
    fetch(server.url("/car.jpg"))
    assert server.hits["/car.jpg"] == 1

Conditional requests are answered like a real server: a route with an `ETag` (or
`Last-Modified`) header answers 304 to a matching `If-None-Match` (or `If-Modified-Since`).

Compressed bodies are served as they are given: build them with `encode()` (or take a
ready-made `gzip_bomb()`) and name the codings in a `Content-Encoding` header.

    server.add("/bomb.jpg", gzip_bomb(), headers={"Content-Encoding": "gzip, gzip"})
"""

from __future__ import annotations

import functools
import ssl
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

Framing = Literal["length", "chunked", "close"]
Coding = Literal["gzip", "deflate", "raw-deflate", "identity"]


def encode(body: bytes, *codings: Coding) -> bytes:
    """`body` with each content coding applied in turn, as `Content-Encoding: a, b` says.

    "deflate" is the zlib format RFC 9110 names; "raw-deflate" is the bare deflate stream
    that some servers send under the name "deflate" all the same.
    """
    for coding in codings:
        if coding == "gzip":
            body = _compress(body, wbits=16 + zlib.MAX_WBITS)
        elif coding == "deflate":
            body = _compress(body, wbits=zlib.MAX_WBITS)
        elif coding == "raw-deflate":
            body = _compress(body, wbits=-zlib.MAX_WBITS)
        elif coding != "identity":
            raise ValueError(f"unknown coding {coding!r}")
    return body


@functools.lru_cache(maxsize=4)
def gzip_bomb(decoded_size: int = 1 << 30, layers: int = 2) -> bytes:
    """`decoded_size` zero bytes, gzipped `layers` times: serve it with
    `Content-Encoding: gzip, gzip` (one "gzip" per layer).

    The default, 1 GiB twice gzipped, is 1,827 bytes on the wire. Built once per process
    (about 2 s), by streaming the zeros through the compressor a MiB at a time.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    parts = []
    for start in range(0, decoded_size, len(block)):
        parts.append(compressor.compress(block[: decoded_size - start]))
    parts.append(compressor.flush())
    body = b"".join(parts)
    for _ in range(layers - 1):
        body = encode(body, "gzip")
    return body


def _compress(body: bytes, *, wbits: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return compressor.compress(body) + compressor.flush()


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    """Seconds to wait before answering at all."""
    chunk_delay: float | None = None
    """When set, the body is sent `chunk_size` bytes at a time with this pause in between."""
    chunk_size: int = 1
    redirect_to: str | None = None
    """Answer a redirect (302 unless `status` is another 3xx) to this Location."""
    fail_times: int = 0
    """Answer `fail_status` to this many requests first, then the real response."""
    fail_status: int = 503
    content_length_lie: int | None = None
    """Send this Content-Length instead of the true one."""
    framing: Framing = "length"
    """How the body's end is marked: Content-Length, chunked encoding, or closing."""


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    client_port: int
    """The client's source port: one per TCP connection, so it shows connection reuse."""


class LocalHTTPServer:
    """A threaded HTTP/1.1 server on 127.0.0.1 with keep-alive, for use in tests."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """`ssl_context` (server side, with a certificate loaded) makes it an HTTPS server."""
        self.routes: dict[str, Route] = {}
        self.requests: list[RecordedRequest] = []
        self.scheme = "http" if ssl_context is None else "https"
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._httpd.daemon_threads = True
        self._httpd.block_on_close = False  # idle keep-alive connections must not block stop()
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def add(
        self,
        path: str,
        body: bytes = b"",
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        chunk_delay: float | None = None,
        chunk_size: int = 1,
        redirect_to: str | None = None,
        fail_times: int = 0,
        fail_status: int = 503,
        content_length_lie: int | None = None,
        framing: Framing = "length",
    ) -> Route:
        """Register (or replace) the answer for `path`; see `Route` for what each option does."""
        route = Route(
            body=body,
            status=status,
            headers=dict(headers or {}),
            delay=delay,
            chunk_delay=chunk_delay,
            chunk_size=chunk_size,
            redirect_to=redirect_to,
            fail_times=fail_times,
            fail_status=fail_status,
            content_length_lie=content_length_lie,
            framing=framing,
        )
        with self._lock:
            self.routes[path] = route
        return route

    @property
    def hits(self) -> Counter[str]:
        """Requests received per path (paths never requested count 0)."""
        with self._lock:
            return Counter(request.path for request in self.requests)

    def headers(self, path: str) -> list[dict[str, str]]:
        """The headers of each request received for `path`, oldest first."""
        with self._lock:
            return [request.headers for request in self.requests if request.path == path]

    @property
    def client_ports(self) -> set[int]:
        """Distinct client ports seen, i.e. the number of TCP connections that sent requests."""
        with self._lock:
            return {request.client_port for request in self.requests}

    def start(self) -> LocalHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> LocalHTTPServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _record(self, handler: BaseHTTPRequestHandler) -> tuple[Route | None, int]:
        """Record the request; return its route and how many times the path was hit."""
        path = handler.path.split("?", 1)[0]
        request = RecordedRequest(
            method=handler.command,
            path=path,
            headers=dict(handler.headers.items()),
            client_port=handler.client_address[1],
        )
        with self._lock:
            self.requests.append(request)
            hits = sum(1 for seen in self.requests if seen.path == path)
            return self.routes.get(path), hits


def _make_handler(server: LocalHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        owner = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    owner: LocalHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, so connection reuse can be observed
    timeout = 10  # an idle keep-alive connection's thread ends eventually

    def do_GET(self) -> None:
        self._answer()

    def do_HEAD(self) -> None:
        self._answer()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep test output clean

    def _answer(self) -> None:
        route, hits = self.owner._record(self)
        try:
            if route is None:
                self._send(Route(body=b"not found", status=404))
            elif hits <= route.fail_times:
                self._send(Route(body=b"try again", status=route.fail_status))
            else:
                time.sleep(route.delay)
                self._send(route)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up, as tests often make it do

    def _send(self, route: Route) -> None:
        status, headers, body = route.status, dict(route.headers), route.body
        if route.redirect_to is not None:
            status = status if 300 <= status < 400 else 302
            headers["Location"] = route.redirect_to
        if self._not_modified(headers):
            status, body = 304, b""
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self._send_framing(route, len(body))
        self.end_headers()
        if self.command != "HEAD" and status != 304:
            self._send_body(route, body)

    def _not_modified(self, headers: dict[str, str]) -> bool:
        """RFC 9110 §13.2.2: If-None-Match decides when sent; else If-Modified-Since."""
        etag, modified = headers.get("ETag"), headers.get("Last-Modified")
        if self.headers.get("If-None-Match") is not None:
            return etag is not None and self.headers.get("If-None-Match") == etag
        since = self.headers.get("If-Modified-Since")
        return modified is not None and since == modified

    def _send_framing(self, route: Route, length: int) -> None:
        if route.framing == "chunked":
            self.send_header("Transfer-Encoding", "chunked")
        elif route.framing == "close":
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            claimed = length if route.content_length_lie is None else route.content_length_lie
            self.send_header("Content-Length", str(claimed))

    def _send_body(self, route: Route, body: bytes) -> None:
        size = route.chunk_size if route.chunk_delay is not None else max(len(body), 1)
        for start in range(0, len(body), size):
            piece = body[start : start + size]
            if route.framing == "chunked":
                piece = b"%x\r\n%s\r\n" % (len(piece), piece)
            self.wfile.write(piece)
            self.wfile.flush()
            if route.chunk_delay is not None:
                time.sleep(route.chunk_delay)
        if route.framing == "chunked":
            self.wfile.write(b"0\r\n\r\n")
        if route.content_length_lie is not None and route.content_length_lie != len(body):
            self.close_connection = True  # the framing is broken; don't reuse it

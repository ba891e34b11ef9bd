"""imports.fetching against a real local HTTP server: no mocks of our own code.

Only the operating-system boundary is ever replaced: a test may hand the Fetcher its own
resolver (a fake DNS table), and every test runs behind a safety net that fails it if any
socket would connect somewhere other than loopback, so no test traffic can leave this
machine even if the SSRF guard were broken.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cars.pictures.reasons import ImageReason
from imports.fetching import (
    Fetcher,
    FetchError,
    FetchPolicy,
    FetchResult,
    Resolver,
    fetch_reference,
    is_public_address,
    resolve_host,
)
from tests.support.httpserver import LocalHTTPServer, encode, gzip_bomb

MakeFetcher = Callable[..., Fetcher]
TEST_SERVER_IP = ipaddress.IPv4Address("127.0.0.1")


@pytest.fixture(autouse=True)
def no_traffic_beyond_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything connects to a non-loopback address, or to a host name
    (our backend must only ever connect to an address it has checked)."""
    real_create_connection = socket.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"test tried to connect to {address[0]}")
        return real_create_connection(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)


@pytest.fixture
def make_fetcher() -> Iterator[MakeFetcher]:
    """Builds Fetchers with fast test defaults (2 s timeout, 10 ms backoff, private
    addresses allowed since the test server is on 127.0.0.1); closes them afterwards."""
    fetchers: list[Fetcher] = []

    def make(
        *,
        resolver: Resolver = resolve_host,
        address_policy: Callable[[Any], bool] = is_public_address,
        max_connections: int = 16,
        **policy: Any,
    ) -> Fetcher:
        options = {"timeout": 2.0, "backoff": 0.01, "allow_private": True} | policy
        fetcher = Fetcher(
            FetchPolicy(**options),
            max_connections=max_connections,
            resolver=resolver,
            address_policy=address_policy,
        )
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        fetcher.close()


def fake_dns(table: dict[str, list[str]]) -> Resolver:
    """A resolver answering from `table`; IP literals resolve to themselves."""

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is not in the test DNS") from None

    return resolve


def only_test_server_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """An address policy for SSRF tests: the local test server plays a public host."""
    return ip == TEST_SERVER_IP


def fetch_error(call: Callable[[], object]) -> FetchError:
    with pytest.raises(FetchError) as caught:
        call()
    return caught.value


# --- plain fetching and connection reuse -----------------------------------------------------


def test_plain_get_returns_body_and_metadata(http_server: LocalHTTPServer, make_fetcher):
    http_server.add(
        "/car.jpg",
        b"jpeg bytes",
        headers={"Content-Type": "image/jpeg", "ETag": '"v1"', "Last-Modified": "Mon, 01 Jan"},
    )

    result = make_fetcher().fetch(http_server.url("/car.jpg"))

    assert result.status == 200
    assert result.content == b"jpeg bytes"
    assert result.url == http_server.url("/car.jpg")
    assert (result.content_type, result.etag, result.last_modified) == (
        "image/jpeg",
        '"v1"',
        "Mon, 01 Jan",
    )
    assert http_server.headers("/car.jpg")[0]["User-Agent"] == "image_backend/0.1"


def test_sequential_fetches_reuse_one_connection(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/a", b"a")
    fetcher = make_fetcher()

    for _ in range(5):
        fetcher.fetch(http_server.url("/a"))

    assert http_server.hits["/a"] == 5
    assert len(http_server.client_ports) == 1


def test_threads_share_the_pool_within_its_connection_limit(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/slow", b"x", delay=0.02)
    fetcher = make_fetcher(max_connections=3)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(4):
                assert fetcher.fetch(http_server.url("/slow")).content == b"x"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert http_server.hits["/slow"] == 32
    assert 1 <= len(http_server.client_ports) <= 3


def test_host_header_keeps_the_name_while_connecting_to_the_checked_address(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/img", b"ok")
    lookups: list[str] = []

    def resolver(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    fetcher = make_fetcher(
        allow_private=False, resolver=resolver, address_policy=only_test_server_is_public
    )
    url = f"http://images.test:{http_server.port}/img"

    result = fetcher.fetch(url)

    assert result.content == b"ok"
    assert result.url == url
    assert http_server.headers("/img")[0]["Host"] == f"images.test:{http_server.port}"
    assert lookups == ["images.test"]  # resolved once; that answer is what was connected to


def test_a_refused_address_falls_back_to_the_next_one(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/img", b"ok")
    # Nothing listens on 127.0.0.2 at the server's port, so the first address is refused.
    fetcher = make_fetcher(resolver=fake_dns({"multi.test": ["127.0.0.2", "127.0.0.1"]}))

    result = fetcher.fetch(f"http://multi.test:{http_server.port}/img")

    assert result.content == b"ok"


def test_conditional_request_answers_304_without_content(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/data.csv", b"title\nA\n", headers={"ETag": '"v1"'})
    fetcher = make_fetcher()

    unchanged = fetcher.fetch(http_server.url("/data.csv"), headers={"If-None-Match": '"v1"'})
    changed = fetcher.fetch(http_server.url("/data.csv"), headers={"If-None-Match": '"v0"'})

    assert (unchanged.status, unchanged.content, unchanged.etag) == (304, b"", '"v1"')
    assert (changed.status, changed.content) == (200, b"title\nA\n")
    assert http_server.headers("/data.csv")[0]["If-None-Match"] == '"v1"'


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHTTPServer]:
    """An HTTPS test server whose self-signed certificate names only `images.test`, trusted
    through SSL_CERT_FILE (which httpx reads when the Fetcher is built)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    command = [
        *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
        *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=images.test"),
        *("-addext", "subjectAltName=DNS:images.test"),
    ]
    subprocess.run(command, check=True, capture_output=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with LocalHTTPServer(ssl_context=context) as server:
        yield server


def test_https_checks_the_certificate_against_the_name_not_the_address(
    tls_server: LocalHTTPServer, make_fetcher
):
    tls_server.add("/img", b"secure")
    same_address = fake_dns({"images.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    fetcher = make_fetcher(resolver=same_address)

    result = fetcher.fetch(f"https://images.test:{tls_server.port}/img")
    # Same IP, different name: it must get its own TLS connection, checked for its own name.
    error = fetch_error(lambda: fetcher.fetch(f"https://other.test:{tls_server.port}/img"))

    assert result.content == b"secure"
    assert error.reason == ImageReason.UNREACHABLE
    assert "certificate" in error.message
    assert tls_server.hits["/img"] == 1


# --- redirects -------------------------------------------------------------------------------


def test_relative_and_absolute_redirects_are_followed(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/old", redirect_to="/middle", status=301)
    http_server.add("/middle", redirect_to=http_server.url("/new"), status=307)
    http_server.add("/new", b"here")

    result = make_fetcher().fetch(http_server.url("/old"))

    assert result.content == b"here"
    assert result.url == http_server.url("/new")
    assert http_server.hits == {"/old": 1, "/middle": 1, "/new": 1}


def add_redirect_chain(server: LocalHTTPServer, hops: int) -> str:
    """/r0 -> /r1 -> ... -> /r{hops} which answers 200; returns the first URL."""
    for hop in range(hops):
        server.add(f"/r{hop}", redirect_to=f"/r{hop + 1}")
    server.add(f"/r{hops}", b"end")
    return server.url("/r0")


def test_five_redirects_are_followed(http_server: LocalHTTPServer, make_fetcher):
    start = add_redirect_chain(http_server, 5)

    assert make_fetcher().fetch(start).content == b"end"


def test_a_sixth_redirect_is_too_many(http_server: LocalHTTPServer, make_fetcher):
    start = add_redirect_chain(http_server, 6)

    error = fetch_error(lambda: make_fetcher().fetch(start))

    assert error.reason == ImageReason.TOO_MANY_REDIRECTS
    assert start in error.message
    assert http_server.hits["/r6"] == 0


def test_a_redirect_loop_is_too_many_redirects(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/ping", redirect_to="/pong")
    http_server.add("/pong", redirect_to="/ping")

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/ping")))

    assert error.reason == ImageReason.TOO_MANY_REDIRECTS
    assert http_server.hits == {"/ping": 1, "/pong": 1}


def test_a_redirect_to_another_scheme_is_unsupported(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/sneaky", redirect_to="file:///etc/passwd")

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/sneaky")))

    assert error.reason == ImageReason.UNSUPPORTED_SCHEME


# --- HTTP errors and retries -----------------------------------------------------------------


def test_404_is_an_http_error_without_retry(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/gone", b"no", status=404)

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/gone")))

    assert error.reason == ImageReason.HTTP_ERROR
    assert "404" in error.message and http_server.url("/gone") in error.message
    assert http_server.hits["/gone"] == 1


def test_503_twice_then_success_is_retried(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/flaky", b"finally", fail_times=2)

    result = make_fetcher(retries=2).fetch(http_server.url("/flaky"))

    assert result.content == b"finally"
    assert http_server.hits["/flaky"] == 3


def test_503_that_persists_is_an_http_error_after_the_retries(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/down", b"down", status=503)

    error = fetch_error(lambda: make_fetcher(retries=2).fetch(http_server.url("/down")))

    assert error.reason == ImageReason.HTTP_ERROR
    assert "503" in error.message
    assert http_server.hits["/down"] == 3


def test_429_is_retried(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/busy", b"ok", fail_times=1, fail_status=429)

    assert make_fetcher().fetch(http_server.url("/busy")).content == b"ok"
    assert http_server.hits["/busy"] == 2


def test_retry_after_is_honoured_but_capped(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/later", status=429, headers={"Retry-After": "3600"})
    started = time.monotonic()

    error = fetch_error(
        lambda: make_fetcher(retries=2, backoff=0.05).fetch(http_server.url("/later"))
    )

    assert error.reason == ImageReason.HTTP_ERROR
    assert http_server.hits["/later"] == 3
    assert time.monotonic() - started < 1.5  # two waits of at most 4 * backoff


# --- size limits -----------------------------------------------------------------------------


def test_oversize_content_length_is_refused_before_reading(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/big", b"x" * 5000)

    error = fetch_error(lambda: make_fetcher(max_bytes=1000).fetch(http_server.url("/big")))

    assert error.reason == ImageReason.TOO_LARGE
    assert "Content-Length" in error.message


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_oversize_body_without_content_length_is_counted(
    http_server: LocalHTTPServer, make_fetcher, framing
):
    http_server.add("/big", b"x" * 5000, framing=framing)

    error = fetch_error(lambda: make_fetcher(max_bytes=1000).fetch(http_server.url("/big")))

    assert error.reason == ImageReason.TOO_LARGE


def test_body_at_the_limit_is_accepted(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/exact", b"x" * 1000, framing="chunked")

    assert len(make_fetcher(max_bytes=1000).fetch(http_server.url("/exact")).content) == 1000


def test_an_understated_content_length_never_lets_more_bytes_through(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/liar", b"x" * 5000, content_length_lie=10)

    result = make_fetcher(max_bytes=1000).fetch(http_server.url("/liar"))

    assert result.content == b"x" * 10  # HTTP framing stops at the declared length


def test_a_body_cut_short_is_unreachable_not_a_truncated_file(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/short", b"x" * 10, content_length_lie=1000)

    error = fetch_error(lambda: make_fetcher(retries=0).fetch(http_server.url("/short")))

    assert error.reason == ImageReason.UNREACHABLE


# --- compressed bodies: the cap counts decoded bytes, in bounded memory ----------------------


def fetch_traced(fetcher: Fetcher, url: str) -> tuple[FetchResult | FetchError, int]:
    """Fetch `url`; return its result or FetchError, and the peak of the memory Python
    allocated meanwhile (tracemalloc sees every bytes object httpx and zlib make)."""
    tracemalloc.start()
    try:
        try:
            outcome: FetchResult | FetchError = fetcher.fetch(url)
        except FetchError as exc:
            outcome = exc
        return outcome, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


PICTURE = bytes(range(256)) * 200 + b"x" * 30_000  # some incompressible, some not


@pytest.mark.parametrize(
    "codings",
    [
        ("gzip",),
        ("deflate",),
        ("raw-deflate",),
        ("gzip", "gzip"),
        ("deflate", "gzip"),
        ("identity", "gzip"),
    ],
)
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_compressed_bodies_are_decoded(
    http_server: LocalHTTPServer, make_fetcher, codings, framing
):
    header = ", ".join("deflate" if c == "raw-deflate" else c for c in codings)
    http_server.add(
        "/car.jpg", encode(PICTURE, *codings), headers={"Content-Encoding": header}, framing=framing
    )

    assert make_fetcher().fetch(http_server.url("/car.jpg")).content == PICTURE


def test_a_compressed_body_trickled_byte_by_byte_is_decoded(
    http_server: LocalHTTPServer, make_fetcher
):
    body = encode(b"car" * 50, "deflate", "gzip")
    http_server.add(
        "/car.jpg",
        body,
        headers={"Content-Encoding": "DEFLATE , x-gzip"},
        chunk_delay=0.001,
        framing="chunked",
    )

    assert make_fetcher().fetch(http_server.url("/car.jpg")).content == b"car" * 50


def test_several_gzip_members_are_one_body(http_server: LocalHTTPServer, make_fetcher):
    http_server.add(
        "/car.jpg",
        encode(b"front", "gzip") + encode(b"back", "gzip"),
        headers={"Content-Encoding": "gzip"},
    )

    assert make_fetcher().fetch(http_server.url("/car.jpg")).content == b"frontback"


def test_only_the_codings_the_fetcher_decodes_are_asked_for(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/car.jpg", b"car")

    make_fetcher().fetch(http_server.url("/car.jpg"))

    assert http_server.headers("/car.jpg")[0]["Accept-Encoding"] == "gzip, deflate"


def test_the_cap_counts_decoded_bytes(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/big", encode(b"x" * 5000, "gzip"), headers={"Content-Encoding": "gzip"})
    http_server.add("/exact", encode(b"x" * 1000, "gzip"), headers={"Content-Encoding": "gzip"})
    fetcher = make_fetcher(max_bytes=1000)

    error = fetch_error(lambda: fetcher.fetch(http_server.url("/big")))

    assert error.reason == ImageReason.TOO_LARGE
    assert "decoded" in error.message
    assert fetcher.fetch(http_server.url("/exact")).content == b"x" * 1000


@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_a_gzip_bomb_is_too_large_and_never_held_in_memory(
    http_server: LocalHTTPServer, make_fetcher, framing
):
    """1,827 bytes on the wire, 1 GiB once decoded: refused at the cap, having held about
    the cap in memory (httpx alone decoded each 64 KiB read whole: all of the GiB)."""
    http_server.add(
        "/bomb.jpg", gzip_bomb(), headers={"Content-Encoding": "gzip, gzip"}, framing=framing
    )
    cap = 1_000_000

    error, peak = fetch_traced(make_fetcher(max_bytes=cap), http_server.url("/bomb.jpg"))

    assert isinstance(error, FetchError) and error.reason == ImageReason.TOO_LARGE, error
    assert peak < cap + 4 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held to refuse a bomb"


@pytest.mark.parametrize(
    "route",
    [
        {"redirect_to": "/car.jpg"},
        {"status": 404},
        {"status": 503, "fail_times": 0},
    ],
)
def test_a_bomb_in_a_body_that_is_thrown_away_is_not_decoded(
    http_server: LocalHTTPServer, make_fetcher, route
):
    http_server.add("/car.jpg", b"car")
    http_server.add("/bomb", gzip_bomb(), headers={"Content-Encoding": "gzip, gzip"}, **route)

    outcome, peak = fetch_traced(make_fetcher(retries=1), http_server.url("/bomb"))

    assert peak < 4 * 1024 * 1024, f"{peak / 2**20:.0f} MiB held to drop a redirect's body"
    if "redirect_to" in route:
        assert isinstance(outcome, FetchResult) and outcome.content == b"car"
    else:
        assert isinstance(outcome, FetchError) and outcome.reason == ImageReason.HTTP_ERROR


@pytest.mark.parametrize("header", ["br", "zstd", "compress", "gzip, br", "x-custom"])
def test_a_coding_the_fetcher_did_not_ask_for_is_refused(
    http_server: LocalHTTPServer, make_fetcher, header
):
    http_server.add("/car.jpg", b"compressed somehow", headers={"Content-Encoding": header})

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/car.jpg")))

    assert error.reason == ImageReason.HTTP_ERROR
    assert "Content-Encoding" in error.message and header.split(", ")[-1] in error.message


def test_more_stacked_codings_than_any_server_needs_are_refused(
    http_server: LocalHTTPServer, make_fetcher
):
    codings = ("gzip",) * 6
    http_server.add(
        "/car.jpg", encode(b"car", *codings), headers={"Content-Encoding": ", ".join(codings)}
    )

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/car.jpg")))

    assert error.reason == ImageReason.HTTP_ERROR
    assert "6 content codings" in error.message


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (b"this is not gzip", "gzip"),
        (encode(b"car" * 1000, "gzip")[:-40], "gzip"),  # cut short inside the stream
        (encode(b"car", "gzip") + b"trailing junk", "gzip"),
        (b"\x78\x9c garbage", "deflate"),
    ],
)
def test_a_corrupt_compressed_body_is_an_http_error(
    http_server: LocalHTTPServer, make_fetcher, body, header
):
    http_server.add("/car.jpg", body, headers={"Content-Encoding": header})

    error = fetch_error(lambda: make_fetcher().fetch(http_server.url("/car.jpg")))

    assert error.reason == ImageReason.HTTP_ERROR
    assert header in error.message


# --- time limits and unreachable servers ----------------------------------------------------


def test_a_trickling_server_is_cut_off_at_the_deadline(http_server: LocalHTTPServer, make_fetcher):
    # Each byte arrives well within the read timeout; only the total deadline stops it.
    http_server.add("/trickle", b"x" * 200, chunk_delay=0.05)
    started = time.monotonic()

    error = fetch_error(
        lambda: make_fetcher(timeout=0.5, retries=2).fetch(http_server.url("/trickle"))
    )

    elapsed = time.monotonic() - started
    assert error.reason == ImageReason.UNREACHABLE
    assert 0.4 < elapsed < 1.3
    assert http_server.hits["/trickle"] == 1  # a slow server is not asked again


def test_one_deadline_covers_every_redirect_hop(http_server: LocalHTTPServer, make_fetcher):
    # Each hop answers well within the 1 s timeout; together they would take 1.8 s.
    for hop in range(5):
        http_server.add(f"/r{hop}", redirect_to=f"/r{hop + 1}", delay=0.3)
    http_server.add("/r5", b"end", delay=0.3)
    started = time.monotonic()

    error = fetch_error(
        lambda: make_fetcher(timeout=1.0, deadline=1.0).fetch(http_server.url("/r0"))
    )

    elapsed = time.monotonic() - started
    assert error.reason == ImageReason.UNREACHABLE
    assert "1 s deadline" in error.message and "redirects and retries" in error.message
    assert 0.9 < elapsed < 1.4
    assert http_server.hits["/r5"] == 0


def test_one_deadline_covers_every_retry(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/busy", b"down", status=503, delay=0.3)
    started = time.monotonic()

    error = fetch_error(
        lambda: make_fetcher(timeout=1.0, deadline=1.0, retries=10).fetch(http_server.url("/busy"))
    )

    elapsed = time.monotonic() - started
    assert error.reason == ImageReason.UNREACHABLE
    assert "deadline" in error.message and "HTTP 503" in error.message
    assert elapsed < 1.4
    assert http_server.hits["/busy"] <= 4


def test_no_retry_is_waited_for_that_would_end_past_the_deadline(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/busy", b"down", status=503)
    started = time.monotonic()

    # Backoff 0.4 s then 0.8 s: the second pause would end past the 0.6 s deadline.
    error = fetch_error(
        lambda: make_fetcher(deadline=0.6, retries=2, backoff=0.4).fetch(http_server.url("/busy"))
    )

    assert error.reason == ImageReason.UNREACHABLE
    assert http_server.hits["/busy"] == 2
    assert time.monotonic() - started < 0.6


def test_the_deadline_is_twice_the_timeout_unless_set():
    assert FetchPolicy(timeout=3).deadline_seconds == 6
    assert FetchPolicy(timeout=3, deadline=4.5).deadline_seconds == 4.5


def test_the_default_deadline_stops_slow_redirects(http_server: LocalHTTPServer, make_fetcher):
    for hop in range(5):
        http_server.add(f"/r{hop}", redirect_to=f"/r{hop + 1}", delay=0.25)
    http_server.add("/r5", b"end", delay=0.25)
    started = time.monotonic()

    error = fetch_error(lambda: make_fetcher(timeout=0.4).fetch(http_server.url("/r0")))

    assert error.reason == ImageReason.UNREACHABLE
    assert "0.8 s deadline" in error.message
    assert time.monotonic() - started < 1.2


def test_a_silent_server_times_out_and_is_retried(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/silent", b"late", delay=1.5)
    started = time.monotonic()

    error = fetch_error(
        lambda: make_fetcher(timeout=0.3, retries=1).fetch(http_server.url("/silent"))
    )

    assert error.reason == ImageReason.UNREACHABLE
    assert "timed out" in error.message
    assert http_server.hits["/silent"] == 2
    assert time.monotonic() - started < 1.2


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_connection_refused_is_unreachable(make_fetcher):
    url = f"http://127.0.0.1:{closed_port()}/img"

    error = fetch_error(lambda: make_fetcher(retries=1).fetch(url))

    assert error.reason == ImageReason.UNREACHABLE
    assert url in error.message


def test_an_unresolvable_host_is_unreachable(make_fetcher):
    error = fetch_error(lambda: make_fetcher().fetch("http://nonexistent.invalid/car.jpg"))

    assert error.reason == ImageReason.UNREACHABLE
    assert "nonexistent.invalid" in error.message


# --- SSRF guard ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "2130706433",  # 127.0.0.1 in decimal
        "0x7f000001",  # ... in hex
        "017700000001",  # ... in octal
        "0x7f.1",  # ... in short dotted hex
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "0.0.0.0",  # reaches local services on Linux
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # shared address space (carrier NAT)
        "[fe80::1]",
        "[fc00::1]",
        "224.0.0.1",
    ],
)
def test_private_and_local_addresses_are_blocked_without_connecting(
    http_server: LocalHTTPServer, make_fetcher, host
):
    http_server.add("/secret", b"internal")
    url = f"http://{host}:{http_server.port}/secret"

    error = fetch_error(lambda: make_fetcher(allow_private=False).fetch(url))

    assert error.reason == ImageReason.BLOCKED_ADDRESS
    assert http_server.requests == []


def test_a_dns_answer_with_any_private_address_is_blocked(
    http_server: LocalHTTPServer, make_fetcher
):
    http_server.add("/img", b"ok")
    fetcher = make_fetcher(
        allow_private=False,
        resolver=fake_dns({"mixed.test": ["127.0.0.1", "10.0.0.1"]}),
        address_policy=only_test_server_is_public,
    )

    error = fetch_error(lambda: fetcher.fetch(f"http://mixed.test:{http_server.port}/img"))

    assert error.reason == ImageReason.BLOCKED_ADDRESS
    assert "mixed.test" in error.message and "10.0.0.1" in error.message
    assert http_server.requests == []


@pytest.mark.parametrize(
    "target", ["http://127.0.0.2:{port}/x", "http://internal.test/x", "http://[::1]:{port}/x"]
)
def test_a_redirect_to_a_private_address_is_blocked(
    http_server: LocalHTTPServer, make_fetcher, target
):
    http_server.add("/hop", redirect_to=target.format(port=http_server.port))
    fetcher = make_fetcher(
        allow_private=False,
        resolver=fake_dns({"public.test": ["127.0.0.1"], "internal.test": ["10.0.0.1"]}),
        address_policy=only_test_server_is_public,
    )

    error = fetch_error(lambda: fetcher.fetch(f"http://public.test:{http_server.port}/hop"))

    assert error.reason == ImageReason.BLOCKED_ADDRESS
    assert http_server.hits == {"/hop": 1}


@pytest.mark.parametrize(
    "address",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:93.184.216.34",  # IPv4-mapped public address
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_public_addresses_are_allowed(address):
    assert is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.1",
        "192.0.2.1",  # documentation
        "198.18.0.1",  # benchmarking
        "198.51.100.1",
        "203.0.113.1",
        "224.0.0.1",  # multicast
        "239.255.255.250",
        "240.0.0.1",  # reserved
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "::7f00:1",  # deprecated IPv4-compatible form
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::",  # 6to4 wrapping 127.0.0.1
        "2002:a00:1::",  # 6to4 wrapping 10.0.0.1
        "fe80::1",
        "fec0::1",  # site-local
        "fc00::1",
        "fd12:3456:789a::1",
        "ff02::1",  # multicast
        "ff0e::1",  # global-scope multicast
        "2001:db8::1",  # documentation
        "100::1",  # discard-only
    ],
)
def test_private_local_and_special_addresses_are_not_public(address):
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/car.jpg",
        "file:///etc/passwd",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "gopher://example.com/",
        "http:///no-host",
        "car.jpg",
    ],
)
def test_only_http_and_https_urls_are_fetched(make_fetcher, url):
    error = fetch_error(lambda: make_fetcher().fetch(url))

    assert error.reason == ImageReason.UNSUPPORTED_SCHEME


# --- fetch_reference: CSV image references ---------------------------------------------------


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    """A CSV's folder with images in it, and a secret file next to (outside) it."""
    folder = tmp_path / "csv"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "car.jpg").write_bytes(b"car")
    (folder / "top.jpg").write_bytes(b"top")
    (tmp_path / "secret.txt").write_bytes(b"secret")
    return folder


@pytest.mark.parametrize(
    ("ref", "content"),
    [("images/car.jpg", b"car"), ("top.jpg", b"top"), ("images/../top.jpg", b"top")],
)
def test_a_relative_path_inside_the_csv_folder_is_read(make_fetcher, csv_dir, ref, content):
    assert fetch_reference(make_fetcher(), ref, base_dir=csv_dir) == content


def test_a_symlink_that_stays_inside_the_folder_is_read(make_fetcher, csv_dir):
    (csv_dir / "alias.jpg").symlink_to(csv_dir / "images" / "car.jpg")

    assert fetch_reference(make_fetcher(), "alias.jpg", base_dir=csv_dir) == b"car"


@pytest.mark.parametrize("ref", ["../secret.txt", "images/../../secret.txt", "/etc/passwd"])
def test_a_path_escaping_the_csv_folder_is_blocked(make_fetcher, csv_dir, ref):
    error = fetch_error(lambda: fetch_reference(make_fetcher(), ref, base_dir=csv_dir))

    assert error.reason == ImageReason.BLOCKED_PATH


def test_an_absolute_path_inside_the_folder_is_still_blocked(make_fetcher, csv_dir):
    ref = str(csv_dir / "top.jpg")

    error = fetch_error(lambda: fetch_reference(make_fetcher(), ref, base_dir=csv_dir))

    assert error.reason == ImageReason.BLOCKED_PATH


def test_a_symlink_pointing_outside_the_folder_is_blocked(make_fetcher, csv_dir):
    (csv_dir / "images" / "escape.jpg").symlink_to(csv_dir.parent / "secret.txt")
    (csv_dir / "linked-dir").symlink_to(csv_dir.parent, target_is_directory=True)

    for ref in ["images/escape.jpg", "linked-dir/secret.txt"]:
        error = fetch_error(lambda ref=ref: fetch_reference(make_fetcher(), ref, base_dir=csv_dir))
        assert error.reason == ImageReason.BLOCKED_PATH, ref


@pytest.mark.parametrize("ref", ["self.jpg", "ping.jpg", "self.jpg/car.jpg", "images/../pong.jpg"])
def test_a_symlink_loop_fails_that_reference_only(make_fetcher, csv_dir, ref):
    """Python 3.11's pathlib raises RuntimeError on a loop; it must be this image's
    failure, not an exception that ends the whole import."""
    (csv_dir / "self.jpg").symlink_to("self.jpg")
    (csv_dir / "ping.jpg").symlink_to("pong.jpg")
    (csv_dir / "pong.jpg").symlink_to("ping.jpg")

    error = fetch_error(lambda: fetch_reference(make_fetcher(), ref, base_dir=csv_dir))

    # blocked_path where pathlib detects the loop (3.11), unreachable where it leaves the
    # loop to the open() that fails (3.13): either way this reference alone fails.
    assert error.reason in (ImageReason.BLOCKED_PATH, ImageReason.UNREACHABLE)
    assert ref in error.message


def test_a_remote_csv_may_not_name_local_files(make_fetcher):
    error = fetch_error(lambda: fetch_reference(make_fetcher(), "images/car.jpg", base_dir=None))

    assert error.reason == ImageReason.BLOCKED_PATH
    assert "remote CSV" in error.message


def test_a_missing_local_file_is_unreachable(make_fetcher, csv_dir):
    error = fetch_error(lambda: fetch_reference(make_fetcher(), "nope.jpg", base_dir=csv_dir))

    assert error.reason == ImageReason.UNREACHABLE
    assert "not found" in error.message


def test_a_directory_is_not_a_file(make_fetcher, csv_dir):
    error = fetch_error(lambda: fetch_reference(make_fetcher(), "images", base_dir=csv_dir))

    assert error.reason == ImageReason.UNREACHABLE


def test_an_oversize_local_file_is_too_large(make_fetcher, csv_dir):
    (csv_dir / "huge.jpg").write_bytes(b"x" * 2000)

    error = fetch_error(
        lambda: fetch_reference(make_fetcher(max_bytes=1000), "huge.jpg", base_dir=csv_dir)
    )

    assert error.reason == ImageReason.TOO_LARGE


def test_a_url_reference_is_fetched_over_http(http_server: LocalHTTPServer, make_fetcher):
    http_server.add("/car.jpg", b"remote car")

    for base_dir in [None, Path(os.curdir)]:
        content = fetch_reference(make_fetcher(), http_server.url("/car.jpg"), base_dir=base_dir)
        assert content == b"remote car"


@pytest.mark.parametrize(
    "ref",
    [
        "ftp://example.com/car.jpg",
        "file:///etc/passwd",
        "data:image/png;base64,AAAA",
        "javascript:x",
    ],
)
def test_a_reference_with_another_scheme_is_unsupported(make_fetcher, csv_dir, ref):
    for base_dir in [None, csv_dir]:
        error = fetch_error(lambda b=base_dir: fetch_reference(make_fetcher(), ref, base_dir=b))
        assert error.reason == ImageReason.UNSUPPORTED_SCHEME

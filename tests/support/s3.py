"""A real S3 wire-protocol server for tests: moto's own server, in a subprocess.

moto's server (`moto.server.main`: what `python -m moto.server` and the `moto_server` script
run) listens on 127.0.0.1 on a port the OS picks (`-p 0`; the port is read back from its
start-up line). The code under test talks to it over real sockets through django-storages
and botocore, exactly as it would talk to S3, MinIO or Ceph.

Every request the server answers is counted *on the server side*: werkzeug, moto's HTTP
server, logs one line per request (`"PUT /bucket/key HTTP/1.1" 200 -`) to stderr, which a
thread here reads and parses. werkzeug writes that line before the first byte of the
response, so once a client has its answer the line is in the pipe; `mark()` and
`requests_since()` add a marker request and wait for its line, so a count taken after
them includes every request that was answered before.

    server = MotoServer().start()
    start = server.mark()
    ...                                   # code that may or may not call S3
    assert server.requests_since(start) == []
    server.stop()
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import unquote

import httpx

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"

_STARTED = re.compile(r"Running on (http://127\.0\.0\.1:\d+)")
_REQUEST = re.compile(r'"(?P<method>[A-Z]+) (?P<target>\S+) HTTP/[\d.]+" (?P<status>\d{3}) ')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MARK_PREFIX = "/__mark__"
# `python -m moto.server ARGS`, except that on Linux the server is told to stop when the
# process that started it dies (PR_SET_PDEATHSIG), so a killed test run leaves no server
# behind. (The signal follows the *thread* that started it: start servers from the main
# thread, as pytest fixtures are.)
_LAUNCH = """\
import os, signal, sys
parent = int(sys.argv.pop(1))
if sys.platform.startswith("linux"):
    import ctypes
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        sys.exit("the test process is gone")
from moto.server import main
main(sys.argv[1:])
"""


@dataclass(frozen=True)
class S3Request:
    """One request the server answered, as its access log line tells it."""

    method: str
    target: str
    """Path and query, e.g. `/bucket/images/a.jpg` or `/bucket?list-type=2`."""
    status: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    def __str__(self) -> str:
        return f"{self.method} {self.target} -> {self.status}"


class MotoServer:
    """moto's S3 server in a subprocess, with its request log parsed as it comes."""

    def __init__(self) -> None:
        self.url = ""
        self._process: subprocess.Popen[str] | None = None
        self._lines: list[str] = []
        self._requests: list[S3Request] = []
        self._changed = threading.Condition()
        self._reader: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle

    def start(self, timeout: float = 30.0) -> MotoServer:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "MOTO_PORT": "0"}
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
            env.pop(name, None)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, str(os.getpid()), "-H", "127.0.0.1", "-p", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env=env,
        )
        self._reader = threading.Thread(
            target=self._read, args=(self._process.stderr,), name="moto-log", daemon=True
        )
        self._reader.start()
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.url:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto server did not start:\n" + self.log_text())
                self._changed.wait(0.1)
        self._wait_until_it_answers(deadline)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL); stopping twice is harmless."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if process.stderr is not None:
            process.stderr.close()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_it_answers(self, deadline: float) -> None:
        while True:
            try:
                httpx.head(f"{self.url}{_MARK_PREFIX}ready", timeout=2.0, trust_env=False)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline or not self.running:
                    self.stop()
                    raise RuntimeError("moto server does not answer:\n" + self.log_text()) from None
                time.sleep(0.05)

    # ------------------------------------------------------------------ request log

    def _read(self, stream: IO[str]) -> None:
        for raw in stream:
            line = _ANSI.sub("", raw.rstrip("\n"))
            with self._changed:
                self._lines.append(line)
                if not self.url and (started := _STARTED.search(line)):
                    self.url = started.group(1)
                elif request := _REQUEST.search(line):
                    self._requests.append(
                        S3Request(request["method"], request["target"], int(request["status"]))
                    )
                self._changed.notify_all()

    def log_text(self) -> str:
        with self._changed:
            return "\n".join(self._lines[-50:])

    def mark(self) -> int:
        """A point in the request log: every request answered so far is before it."""
        token = f"{_MARK_PREFIX}{uuid.uuid4().hex}"
        httpx.head(f"{self.url}{token}", timeout=5.0, trust_env=False)
        deadline = time.monotonic() + 10
        with self._changed:
            while True:
                for index in range(len(self._requests) - 1, -1, -1):
                    if self._requests[index].path == token:
                        return index + 1
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the marker request {token} never reached the log")
                self._changed.wait(0.1)

    def requests_since(self, mark: int) -> list[S3Request]:
        """Requests answered after `mark` and before now (marker requests left out)."""
        end = self.mark()
        with self._changed:
            seen = self._requests[mark:end]
        return [r for r in seen if not r.path.startswith(_MARK_PREFIX)]

    # ------------------------------------------------------------------ clients

    def client(self) -> Any:
        """A boto3 S3 client of the test's own (its requests are counted too)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def storage_options(self, bucket: str, **overrides: Any) -> dict[str, Any]:
        """`STORAGES["default"]["OPTIONS"]` as config/settings/base.py builds them for S3."""
        return {
            "bucket_name": bucket,
            "endpoint_url": self.url,
            "region_name": REGION,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "custom_domain": None,
            "querystring_auth": False,
            "file_overwrite": True,
            "default_acl": None,
            "object_parameters": {"CacheControl": "public, max-age=31536000, immutable"},
            **overrides,
        }


@dataclass
class Bucket:
    server: MotoServer
    name: str
    client: Any

    def keys(self) -> set[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return {obj["Key"] for page in pages for obj in page.get("Contents", [])}

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def head(self, key: str) -> dict:
        return self.client.head_object(Bucket=self.name, Key=key)

    def key_of(self, request: S3Request) -> str | None:
        """The object key a request addressed in this bucket (path-style), else None."""
        prefix = f"/{self.name}/"
        path = unquote(request.path)
        return path[len(prefix) :] if path.startswith(prefix) else None

    @property
    def endpoint(self) -> str:
        """Where the bucket's objects are served: `<endpoint>/<key>`."""
        return f"{self.server.url}/{self.name}"


def make_bucket(server: MotoServer, cls: type | None = None) -> Bucket:
    """A new bucket, publicly readable as production's is (of `cls`, a Bucket kind)."""
    name = f"cars-{uuid.uuid4().hex[:12]}"
    client = server.client()
    client.create_bucket(Bucket=name)
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{name}/*",
            }
        ],
    }
    client.put_bucket_policy(Bucket=name, Policy=json.dumps(public_read))
    return (cls or Bucket)(server, name, client)

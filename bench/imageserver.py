"""A threaded local image server that answers after a configurable latency.

HTTP/1.1 with keep-alive (Content-Length on every response), one thread per connection,
files held in memory after the first read. It records when the first request arrived and
when the last byte of the last response was written: the import's download window, seen
from outside.

Run alone: `python -m bench.imageserver FOLDER --latency 0.05 --port 8900`.
"""

import argparse
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 16+ clients connecting at once must not hit SYN retries
    block_on_close = False

    def __init__(self, address, folder: Path, latency: float):
        super().__init__(address, _Handler)
        self.folder = folder.resolve()
        self.latency = latency
        self.lock = threading.Lock()
        self.cache: dict[str, bytes] = {}
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.requests = 0
            self.bytes_sent = 0
            self.first_request: float | None = None
            self.last_byte: float | None = None

    def load(self, name: str) -> bytes | None:
        data = self.cache.get(name)
        if data is None:
            path = (self.folder / name).resolve()
            if path.parent != self.folder or not path.is_file():
                return None
            data = self.cache[name] = path.read_bytes()
        return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: _Server

    def do_GET(self) -> None:
        arrived = time.perf_counter()
        with self.server.lock:
            self.server.requests += 1
            if self.server.first_request is None:
                self.server.first_request = arrived
        name = unquote(urlsplit(self.path).path).lstrip("/")
        data = self.server.load(name)
        time.sleep(self.server.latency)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()
        done = time.perf_counter()
        with self.server.lock:
            self.server.bytes_sent += len(data)
            self.server.last_byte = max(self.server.last_byte or done, done)

    def log_message(self, format, *args) -> None:
        pass


class ImageServer:
    """`with ImageServer(folder, latency=0.05) as server:` serves `server.base_url`/NAME."""

    def __init__(self, folder: Path, *, latency: float, port: int = 0):
        self._server = _Server(("127.0.0.1", port), folder, latency)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def reset(self) -> None:
        self._server.reset()

    def stats(self) -> dict:
        s = self._server
        window = (
            s.last_byte - s.first_request if s.first_request and s.last_byte is not None else None
        )
        return {"requests": s.requests, "bytes": s.bytes_sent, "window_s": window}

    def __enter__(self) -> "ImageServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before answering")
    parser.add_argument("--port", type=int, default=8900)
    args = parser.parse_args()
    with ImageServer(args.folder, latency=args.latency, port=args.port) as server:
        print(f"serving {args.folder} on {server.base_url} (latency {args.latency} s)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()

"""Container health check: GET a probe of the local gunicorn, exit 0 on HTTP 200.

Usage: python deploy/docker/healthcheck.py [/healthz|/readyz]   (default /healthz)

Django answers 400 to a Host outside ALLOWED_HOSTS, so the request carries the first
ALLOWED_HOSTS entry (a leading-dot pattern loses its dot; `*` becomes localhost).
Standard library only: the slim image has no curl or wget.
"""

import os
import sys
import urllib.error
import urllib.request


def probe_host() -> str:
    hosts = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "").split(",") if h.strip()]
    host = hosts[0].lstrip(".") if hosts else "localhost"
    return "localhost" if host in ("", "*") else host


def main() -> int:
    path = sys.argv[1] if len(sys.argv) > 1 else "/healthz"
    request = urllib.request.Request(
        f"http://127.0.0.1:8000{path}",
        headers={"Host": probe_host(), "X-Forwarded-Proto": "https"},
    )
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return 0 if response.status == 200 else 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

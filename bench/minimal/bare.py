"""The limit of the server stack: a bare WSGI callable that answers every request with
the bytes of a cached list page (status, headers, body) read once from BENCH_PAGE.

bench/api.py writes that file from the project's own answer, then serves this with the
same gunicorn command as the project. No Django, no database: what is left is gunicorn,
the HTTP parsing and the socket, which any Python WSGI application pays.
"""

import json
import os

with open(os.environ["BENCH_PAGE"], encoding="utf-8") as fh:
    _page = json.load(fh)
_status = _page["status"]
_headers = [(name, value) for name, value in _page["headers"]]
_body = [_page["body"].encode()]


def application(environ, start_response):
    start_response(_status, _headers)
    return _body

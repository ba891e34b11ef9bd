"""API throughput with wrk: the project against a cached minimal Django view.

The reference is a minimal Django project (bench/minimal/: no DRF, the apps and middleware
of Django's `startproject` template) on the same SQLite file, whose view answers the same
SQL's rows orjson-dumped, cached in a module global: a 304 of ours must reach 0.9× of it,
and a cached page of ours 0.9× of the same view counting each request in
django-prometheus' families as ours does for `/metrics`, at the same price (its Before
middleware, our After one, core/request_metrics.py: `bench/minimal/with_metrics.py`).
Information: the cached page against the view without metrics
(#26's first target), the same view uncached, the same project with no middleware at all
(Django's floor), and the limit of the server stack, a bare WSGI callable
(bench/minimal/bare.py) answering the same bytes as our cached first page. Every server
runs gunicorn with 2 workers on 127.0.0.1; wrk runs 2 threads and 16 connections
(`-t2 -c16`). Every URL is checked once by hand (status, body) and warmed for a second;
then the URLs are measured in turn, ours alternating with the references, for a few
rounds, and each keeps its best run.
"""

import http.client
import itertools
import json
import re
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from . import bulk
from .common import OUT, Config, Site, gunicorn, http_get, median, server_env
from .report import Row, at_least, at_most, info, rate, seconds

PAGE = "limit=100"


def wrk(port: int, path: str, seconds: int, headers: dict[str, str] | None = None) -> dict:
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--latency"]
    for name, value in (headers or {}).items():
        cmd += ["-H", f"{name}: {value}"]
    cmd.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}: {out.stderr or out.stdout}")
    text = out.stdout

    def number(pattern: str) -> float | None:
        match = re.search(pattern, text)
        return float(match.group(1)) if match else None

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    return {
        "path": path,
        "headers": headers or {},
        "requests_per_s": number(r"Requests/sec:\s+([\d.]+)"),
        "requests": number(r"(\d+) requests in"),
        "p50_ms": _latency(text, "50%"),
        "p99_ms": _latency(text, "99%"),
        "non_2xx_3xx": int(number(r"Non-2xx or 3xx responses: (\d+)") or 0),
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def _latency(text: str, label: str) -> float | None:
    match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", text)
    if not match:
        return None
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]


@dataclass(frozen=True)
class Probe:
    port: int
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    expect: int = 200

    def check(self) -> None:
        """One request by hand: the status, and a full page of items for a 200."""
        status, _, body, _ = http_get(self.port, self.path, self.headers)
        if status != self.expect:
            raise RuntimeError(f"{self.path} answered {status}, expected {self.expect}")
        if status == 200 and len(json.loads(body)) != 100:
            raise RuntimeError(f"{self.path} answered {len(json.loads(body))} items, not 100")


def measure_alternating(probes: dict[str, Probe], cfg: Config) -> dict:
    """wrk every probe in turn, `cfg.wrk_rounds` rounds; keep each probe's best run.

    Alternating ours with the references, rather than one after the other, keeps their
    ratios fair when other processes load the machine for a while; the best run is the
    least disturbed one.
    """
    for probe in probes.values():
        probe.check()
        wrk(probe.port, probe.path, 1, probe.headers)  # warm-up (every worker, every cache)
    runs: dict[str, list[dict]] = {name: [] for name in probes}
    for _ in range(cfg.wrk_rounds):
        for name, probe in probes.items():
            try:
                result = wrk(probe.port, probe.path, cfg.wrk_seconds, probe.headers)
            except RuntimeError as exc:  # once more, then let it fail the benchmark
                print(f"  retrying after: {exc}", file=sys.stderr)
                result = wrk(probe.port, probe.path, cfg.wrk_seconds, probe.headers)
            if result["non_2xx_3xx"] or result["socket_errors"]:
                raise RuntimeError(f"wrk {probe.path}: errors {result}")
            runs[name].append(result)
    return {
        name: {
            **max(found, key=lambda r: r["requests_per_s"] or 0),
            "runs_requests_per_s": [r["requests_per_s"] for r in found],
        }
        for name, found in runs.items()
    }


def first_hit(port: int, path: str, count: int = 5) -> float:
    """Median latency of URLs no response cache has seen yet (warm workers, cold URL).

    The workers are warmed first on another URL; each timed URL carries an extra,
    ignored parameter that makes it new.
    """
    wrk(port, "/api/cars/web/?limit=50", 1)
    return median([http_get(port, f"{path}&first-hit={next(_fresh)}")[3] for _ in range(count)])


_fresh = itertools.count()


def save_page(port: int, path: str, target: Path) -> None:
    """Status, headers (as sent, but those gunicorn adds itself) and body of one answer."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        status = f"{response.status} {response.reason}"
        headers = [h for h in response.getheaders() if h[0].lower() not in SERVER_HEADERS]
    finally:
        conn.close()
    target.write_text(json.dumps({"status": status, "headers": headers, "body": body.decode()}))


SERVER_HEADERS = {"date", "server", "connection", "transfer-encoding", "keep-alive"}


def minimal_env(site: Site, settings: str = "bench.minimal.settings") -> dict[str, str]:
    env = server_env(site)
    env.update(DJANGO_SETTINGS_MODULE=settings, BENCH_DB=str(site.db))
    return env


def run(cfg: Config) -> tuple[dict, list[Row]]:
    (OUT / "logs").mkdir(parents=True, exist_ok=True)
    site, big_site = bulk.table(cfg.api_rows), bulk.table(cfg.big_rows)
    deep, big_deep = cfg.deep_offset, cfg.big_deep_offset
    first = f"/api/cars/web/?{PAGE}"
    results: dict = {
        "rows": cfg.api_rows,
        "big_rows": cfg.big_rows,
        "wrk": f"-t2 -c16 -d{cfg.wrk_seconds}s, best of {cfg.wrk_rounds} alternated runs",
    }
    with ExitStack() as servers:

        def minimal_server(settings: str, log_name: str) -> int:
            port, _ = servers.enter_context(
                gunicorn(
                    "bench.minimal.wsgi",
                    env=minimal_env(site, settings),
                    ready_path=f"/cars/?{PAGE}",
                    log_name=log_name,
                )
            )
            return port

        minimal = minimal_server("bench.minimal.settings", "minimal")
        no_middleware = minimal_server("bench.minimal.no_middleware", "minimal-no-middleware")
        with_metrics = minimal_server("bench.minimal.with_metrics", "minimal-with-metrics")
        ours, _ = servers.enter_context(
            gunicorn("config.wsgi", env=server_env(site), ready_path="/healthz", log_name="api")
        )
        big, _ = servers.enter_context(
            gunicorn("config.wsgi", env=server_env(big_site), ready_path="/healthz", log_name="big")
        )
        cold = {
            "first_page": first_hit(ours, first),
            "deep_page": first_hit(ours, f"{first}&offset={deep}"),
            "big_first_page": first_hit(big, first),
            "big_deep_page": first_hit(big, f"{first}&offset={big_deep}"),
        }
        results["first_hit_s"] = cold
        etag = http_get(ours, first)[1].get("etag")
        if not etag:
            raise RuntimeError(f"{first} has no ETag")
        page = OUT / "logs" / "bare-page.json"
        save_page(ours, first, page)
        bare, _ = servers.enter_context(
            gunicorn(
                "bench.minimal.bare",
                env={**server_env(site), "BENCH_PAGE": str(page)},
                ready_path=first,
                log_name="bare",
            )
        )
        probes = {
            "bare": Probe(bare, first),
            "minimal": Probe(minimal, f"/cars/?{PAGE}"),
            "minimal_cached": Probe(minimal, f"/cars-cached/?{PAGE}"),
            "no_middleware_cached": Probe(no_middleware, f"/cars-cached/?{PAGE}"),
            "metrics_cached": Probe(with_metrics, f"/cars-cached/?{PAGE}"),
            "first_page": Probe(ours, first),
            "not_modified": Probe(ours, first, {"If-None-Match": etag}, expect=304),
            "deep_page": Probe(ours, f"{first}&offset={deep}"),
            "big_first_page": Probe(big, first),
            "big_deep_page": Probe(big, f"{first}&offset={big_deep}"),
        }
        results.update(measure_alternating(probes, cfg))

    def rps(name: str) -> float:
        return results[name]["requests_per_s"]

    n = f"{cfg.api_rows // 1000}k"
    big_n = f"{cfg.big_rows // 1000}k" if cfg.big_rows < 1_000_000 else "1M"
    limit = rate(rps("bare"))
    cached_view = rate(rps("minimal_cached"))
    rows = [
        info("bare WSGI, same bytes (the limit)", limit, note="same gunicorn, no Django"),
        info(
            "minimal Django view + orjson",
            rate(rps("minimal")),
            limit,
            rps("minimal") / rps("bare"),
            note=f"{n} cars, limit=100; startproject's middleware",
        ),
        info(
            "minimal view, cached bytes (the reference)",
            cached_view,
            limit,
            rps("minimal_cached") / rps("bare"),
            note="startproject's middleware",
        ),
        info(
            "minimal view, cached bytes, no middleware",
            rate(rps("no_middleware_cached")),
            limit,
            rps("no_middleware_cached") / rps("bare"),
            note="Django's floor; no security headers",
        ),
        info(
            "minimal view, cached bytes, + django-prometheus",
            rate(rps("metrics_cached")),
            limit,
            rps("metrics_cached") / rps("bare"),
            note=f"startproject's middleware and request metrics; "
            f"{rps('metrics_cached') / rps('minimal_cached'):.2f}× the reference",
        ),
        at_least(
            f"API first page ({n} cars, cached) vs cached view + metrics",
            rate(rps("first_page")),
            rate(rps("metrics_cached")),
            rps("first_page") / rps("metrics_cached"),
            0.9,
            note=f"p50 {results['first_page']['p50_ms']} ms; equal work: both count the "
            "request in django-prometheus' families, with the same middleware",
        ),
        info(
            f"  API first page ({n} cars, cached) vs cached view",
            rate(rps("first_page")),
            cached_view,
            rps("first_page") / rps("minimal_cached"),
            note="#26's row until session 9 (≥ 0.9): the view counts nothing for /metrics; "
            f"{rps('first_page') / rps('no_middleware_cached'):.2f}× the no-middleware view, "
            f"{rps('first_page') / rps('bare'):.2f}× the limit",
        ),
        at_least(
            "If-None-Match → 304 vs cached view",
            rate(rps("not_modified")),
            cached_view,
            rps("not_modified") / rps("minimal_cached"),
            0.9,
            note=f"{rps('not_modified') / rps('metrics_cached'):.2f}× the view with request "
            f"metrics, {rps('not_modified') / rps('no_middleware_cached'):.2f}× the no-middleware "
            f"view, {rps('not_modified') / rps('bare'):.2f}× the limit",
        ),
        at_most(
            f"deep page offset={deep:,} vs first page",
            rate(rps("deep_page")),
            rate(rps("first_page")),
            rps("first_page") / rps("deep_page"),
            1.5,
            note="ratio = slow-down of the deep page",
        ),
        at_most(
            f"deep page offset={big_deep:,} ({big_n}) vs first",
            rate(rps("big_deep_page")),
            rate(rps("big_first_page")),
            rps("big_first_page") / rps("big_deep_page"),
            1.5,
            note="ratio = slow-down of the deep page",
        ),
        info(
            f"  first hit, offset={deep:,} vs first page",
            seconds(cold["deep_page"]),
            seconds(cold["first_page"]),
            cold["deep_page"] / cold["first_page"],
            note="median of 5 URLs new to the response cache, warm workers",
        ),
        info(
            f"  first hit, offset={big_deep:,} vs first page",
            seconds(cold["big_deep_page"]),
            seconds(cold["big_first_page"]),
            cold["big_deep_page"] / cold["big_first_page"],
        ),
    ]
    return results, rows

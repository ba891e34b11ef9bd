"""Typo-tolerant search on the big table (1M cars): a query with a typo against the same
query spelled right, on the same server, in the same run.

Each request is one no response cache has seen (an extra, ignored parameter makes its URL
new), so it runs the search: for the typo, the vocabulary look-ups, the near words and
the wider full-text query. The total is cached per catalogue version like any count, so
after each query's first request only the rows are read; medians of alternated requests.
Before timing, each typo must come back corrected to its word, with the same first page.
"""

import json
from urllib.parse import quote

from . import bulk
from .common import Config, gunicorn, http_get, median, server_env
from .report import Row, at_most, seconds

# (typo, the query spelled right), in the bench's words (bench/data.py WORDS): one word
# in a third of the cars, then the same word with a number that leaves a few dozen.
PAIRS = (("famly", "family"), ("famly 4242", "family 4242"))
TARGET = 3.0  # the typo search may cost at most 3× the exact one


def _path(query: str, fresh: int | None = None) -> str:
    path = f"/api/cars/web/?limit=100&search={quote(query)}"
    # A distinct valid page each time: the response cache keys on the parsed query, so
    # a junk parameter no longer makes a request uncached (issue #22).
    return path if fresh is None else f"{path}&offset={fresh}"


def _check(port: int, typo: str, word: str) -> int:
    """The typo is corrected to `word` and finds the same cars in the same order; how many."""
    status, headers, body, _ = http_get(port, _path(typo))
    _, word_headers, word_body, _ = http_get(port, _path(word))
    if status != 200 or headers.get("x-search-corrected") != quote(word, safe=" "):
        raise RuntimeError(f"{typo!r}: {status}, corrected to {headers.get('x-search-corrected')}")
    total = headers.get("x-total-count")
    if total != word_headers.get("x-total-count") or not json.loads(body):
        raise RuntimeError(f"{typo!r} found {total} cars, {word!r} {word_headers['x-total-count']}")
    if json.loads(body) != json.loads(word_body):
        raise RuntimeError(f"{typo!r} and {word!r} list different cars first")
    return int(total)


def run(cfg: Config) -> tuple[dict, list[Row]]:
    site = bulk.table(cfg.big_rows)
    rounds = 3 if cfg.quick else 9
    times: dict[str, list[float]] = {query: [] for pair in PAIRS for query in pair}
    totals = {}
    with gunicorn(
        "config.wsgi", env=server_env(site), ready_path="/healthz", log_name="search"
    ) as (
        port,
        _,
    ):
        for typo, word in PAIRS:
            totals[word] = _check(port, typo, word)  # also caches both counts
        fresh = 0
        for _ in range(rounds):
            for query in times:
                fresh += 1
                status, _, _, elapsed = http_get(port, _path(query, fresh))
                if status != 200:
                    raise RuntimeError(f"{_path(query, fresh)} answered {status}")
                times[query].append(elapsed)
    medians = {query: median(found) for query, found in times.items()}
    results = {"rows": cfg.big_rows, "totals": totals, "median_s": medians, "times_s": times}
    n = f"{cfg.big_rows // 1000}k" if cfg.big_rows < 1_000_000 else "1M"
    rows = [
        at_most(
            f"search `{typo}` vs `{word}` ({n} cars)",
            seconds(medians[typo]),
            seconds(medians[word]),
            medians[typo] / medians[word],
            TARGET,
            note=f"{totals[word]:,} cars found; median of {rounds} uncached requests each",
        )
        for typo, word in PAIRS
    ]
    return results, rows

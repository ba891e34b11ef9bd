"""Keeping the engine's index in step with the database, and rebuilding it.

Writes reach the index after their transaction commits (`transaction.on_commit`), in
bulk requests, in the process that wrote them: an import's own task when it is queued.
A sync reads the cars it is given from the database and indexes those that exist and
deletes the others, so it is idempotent and never writes a car the database does not
have. The catalogue version moves once the index has them, so no response cached in
between (under the version of the commit) outlives them.

When a write cannot reach the engine (it is down, the process dies in between), the
index lags the database until `manage.py search_index --rebuild`: meanwhile results are
filtered through the database, so a deleted car never shows; a new or edited one is
missing from results, or found by its former words.

`rebuild()` fills a new index `<SEARCH_INDEX>-<timestamp>` while search reads the old
one, then moves the alias in one atomic request that also deletes the old index, then
indexes again the cars written meanwhile (they went to the old index). One rebuild of an
alias runs at a time (`rebuild_lock`); a rebuild killed mid-way leaves an index behind
no alias, which the next one deletes.
"""

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from opensearchpy import OpenSearch
from opensearchpy.exceptions import OpenSearchException

from cars.catalog import bump_catalog_version
from cars.models import Car

from .client import client, configured, index_alias
from .mapping import CAR_FIELDS, document, index_body, live_settings
from .rebuild_lock import RebuildRunning, rebuild_lock

logger = logging.getLogger("cars.search")

BULK_SIZE = 1000  # cars per bulk request (about 0.5 MB of text)
DRAIN_SECONDS = 2.0  # searches begun on an old index end before it is deleted
# A rebuild's requests (a bulk of 1000 cars, the refresh of a million, deleting an index)
# may take longer than a search on a busy node, and one timing out wastes the rebuild.
REBUILD_TIMEOUT = 120.0


class IndexingFailed(Exception):
    """The engine refused some documents of a bulk request."""


# --------------------------------------------------------------------------- after commit


def index_on_commit(ids: Iterable[int]) -> None:
    """Bring these cars (written or deleted in the current transaction) to the index
    once it commits. Nothing without SEARCH_URL."""
    if not configured():
        return
    ids = sorted(set(ids))
    if ids:
        transaction.on_commit(lambda: _after_commit(lambda: sync(ids)), robust=True)


@contextmanager
def indexing_writes() -> Iterator[None]:
    """Index, once the transaction commits, every car written inside the block (an
    import's rows: each insert and update sets `updated_at`)."""
    if not configured():
        yield
        return
    started = timezone.now()
    yield
    transaction.on_commit(lambda: _after_commit(lambda: index_changed_since(started)), robust=True)


def _after_commit(work: Callable[[], int]) -> None:
    try:
        if not client().indices.exists_alias(name=index_alias()):
            logger.warning("no search index %r yet: building it", index_alias())
            rebuild()
        elif not work():
            return
        bump_catalog_version()
    except RebuildRunning:
        # Its catching up, after its swap, indexes every car written since it began.
        logger.info("search index %r: another process is building it", index_alias())
    except (OpenSearchException, IndexingFailed) as exc:
        logger.error(
            "search index %r not updated, it lags the database until "
            "`manage.py search_index --rebuild`: %s",
            index_alias(),
            exc,
        )


# --------------------------------------------------------------------------- syncing


def sync(ids: list[int]) -> int:
    """Index the cars of `ids` that exist, delete the others from the index; return how
    many ids were synced."""
    es, alias = client(), index_alias()
    for start in range(0, len(ids), BULK_SIZE):
        chunk = ids[start : start + BULK_SIZE]
        cars = list(Car.objects.filter(pk__in=chunk).values(*CAR_FIELDS))
        gone = set(chunk) - {car["id"] for car in cars}
        lines = _index_lines(cars) + [_action("delete", pk) for pk in sorted(gone)]
        last = start + BULK_SIZE >= len(ids)
        _bulk(es, alias, lines, refresh=settings.SEARCH_REFRESH if last else "false")
    return len(ids)


def index_changed_since(started: datetime) -> int:
    """Index every car written since `started`; return how many."""
    cars = Car.objects.filter(updated_at__gte=started).order_by()
    return _index_all(client(), index_alias(), cars, refresh=settings.SEARCH_REFRESH)


def _index_all(es: OpenSearch, target: str, cars: QuerySet, *, refresh: str) -> int:
    done, batch = 0, []
    for car in cars.values(*CAR_FIELDS).iterator(chunk_size=BULK_SIZE):
        batch.append(car)
        if len(batch) == BULK_SIZE:
            _bulk(es, target, _index_lines(batch), refresh="false")
            done, batch = done + len(batch), []
    if batch or done:
        _bulk(es, target, _index_lines(batch), refresh=refresh)
    return done + len(batch)


def _action(op: str, pk: int) -> str:
    return '{"%s":{"_id":"%d"}}' % (op, pk)  # noqa: UP031 (the hot loop of a bulk)


def _index_lines(cars: Iterable[dict]) -> list[str]:
    lines = []
    for car in cars:
        lines.append(_action("index", car["id"]))
        lines.append(json.dumps(document(car), ensure_ascii=False, separators=(",", ":")))
    return lines


def _bulk(es: OpenSearch, target: str, lines: list[str], *, refresh: str) -> None:
    if not lines:
        if refresh != "false":
            es.indices.refresh(index=target)
        return
    answer = es.bulk(
        body="\n".join(lines) + "\n",
        index=target,
        refresh=refresh,
        require_alias="true" if target == index_alias() else "false",
    )
    if not answer["errors"]:
        return
    failed = []
    for item in answer["items"]:
        ((op, result),) = item.items()
        if "error" in result and not (op == "delete" and result.get("status") == 404):
            failed.append(f"{result.get('_id')}: {result['error'].get('reason', result['error'])}")
    if failed:
        raise IndexingFailed(f"{len(failed)} refused, first: {failed[0]}")


# --------------------------------------------------------------------------- rebuilding


@dataclass(frozen=True)
class Rebuilt:
    index: str
    cars: int
    caught_up: int  # written while it was built


def rebuild() -> Rebuilt:
    """A new index with every car, behind the alias; the old index deleted. Raises
    RebuildRunning while another process rebuilds the same alias."""
    with rebuild_lock(index_alias()):
        return _rebuild()


def _rebuild() -> Rebuilt:
    es, alias = client(timeout=REBUILD_TIMEOUT), index_alias()
    started = timezone.now()
    name = f"{alias}-{started:%Y%m%d%H%M%S%f}"
    es.indices.create(index=name, body=index_body(building=True))
    try:
        count = _index_all(es, name, Car.objects.order_by("pk"), refresh="false")
        es.indices.put_settings(index=name, body={"index": live_settings()})
        es.indices.refresh(index=name)
        _swap(es, alias, name)
    except BaseException:
        es.indices.delete(index=name, ignore_unavailable=True)
        raise
    caught_up = index_changed_since(started)
    _delete_orphans(es, alias, keep=name)
    logger.info("search index %s: %s cars, %s written meanwhile", name, count, caught_up)
    return Rebuilt(name, count, caught_up)


def _swap(es: OpenSearch, alias: str, name: str) -> None:
    """Point `alias` at `name` alone, in one atomic request: searches read the old index
    up to it, the new one from it on. The old index is deleted a moment later, once the
    searches that began on it have ended (deleting it in the same request failed them)."""
    old = list(es.indices.get_alias(name=alias)) if es.indices.exists_alias(name=alias) else []
    actions = [{"add": {"index": name, "alias": alias}}]
    actions += [{"remove": {"index": index, "alias": alias}} for index in old if index != name]
    if not old and es.indices.exists(index=alias):
        # A concrete index of that name (made by hand, or by a write before any rebuild):
        # an alias cannot share its name, so it goes in the same request.
        actions.append({"remove_index": {"index": alias}})
    es.indices.update_aliases(body={"actions": actions})
    if old := [index for index in old if index != name]:
        time.sleep(DRAIN_SECONDS)
        es.indices.delete(index=old, ignore_unavailable=True)


def _delete_orphans(es: OpenSearch, alias: str, *, keep: str) -> None:
    """Indices of rebuilds that never swapped (a crash): `<alias>-<timestamp>` with no alias."""
    pattern = re.compile(rf"^{re.escape(alias)}-\d{{20}}$")
    indices = es.indices.get_alias(index=f"{alias}-*", expand_wildcards="open,closed")
    for index, info in indices.items():
        if index != keep and pattern.match(index) and not info.get("aliases"):
            es.indices.delete(index=index, ignore_unavailable=True)

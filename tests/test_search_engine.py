"""The OpenSearch engine beyond the contract both engines share (tests/test_search.py):
the index following the database, the rebuild and its alias swap, the engine down, an
index a crash left behind (an import or a rebuild SIGKILLed mid-way), one rebuild at a
time, and sites sharing one cluster (SPEC §6a, issue #25).

Every test runs on the real node of `make services` (tests/support/search.py), under
this run's own index alias; none replaces the engine by a fake.
"""

import io
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from django.conf import settings
from django.core.cache import cache
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from opensearchpy import OpenSearch
from opensearchpy.helpers import scan

from cars.catalog import bump_catalog_version
from cars.models import Car
from cars.search_engine import rebuild
from cars.search_engine.indexing import sync
from cars.search_engine.rebuild_lock import rebuild_lock
from cars.services import CarRow, upsert_cars
from imports.services import run_import
from tests.support.catalog import write_csv
from tests.support.project import ROOT, manage, migrate, project_env
from tests.support.search import OPENSEARCH_URL, delete_indices, require_opensearch
from tests.support.stack import free_port, running_stack

ROWS = [
    ["aurora", "Aurora GT", "A red grand tourer with a long bonnet.", ""],
    ["boreal", "Boreal Estate", "Blue family estate with a quiet diesel.", ""],
    ["citroen", "Citroën Traction", "Black classic saloon from Paris.", ""],
]
DEGRADED = "answered by the database"


def import_rows(tmp_path, rows, **options):
    report = run_import(source=str(write_csv(tmp_path / "cars.csv", rows)), workers=1, **options)
    assert report.counts.rejected == 0, report.summary()
    return report


def search(client, query: str, **params) -> tuple[list[str], str | None]:
    response = client.get("/api/cars/", {"search": query, **params})
    assert response.status_code == 200, response.content[:300]
    return [car["title"] for car in response.json()], response.get("X-Search-Corrected")


def titles(client, query: str) -> list[str]:
    return search(client, query)[0]


def indexed(engine, alias: str | None = None) -> dict[int, str]:
    """What the index holds: id → title."""
    alias = alias or settings.SEARCH_INDEX
    engine.indices.refresh(index=alias)
    body = {"size": 1000, "query": {"match_all": {}}}
    hits = engine.search(index=alias, body=body)["hits"]["hits"]
    return {int(hit["_id"]): hit["_source"]["title"] for hit in hits}


def behind(engine, alias: str) -> list[str]:
    """The indices an alias points at."""
    return (
        sorted(engine.indices.get_alias(name=alias))
        if engine.indices.exists_alias(name=alias)
        else []
    )


def engine_down(settings) -> None:
    """SEARCH_URL at a port nothing listens on; the response cache forgotten."""
    settings.SEARCH_URL = f"http://127.0.0.1:{free_port()}"
    cache.clear()


def engine_up(settings) -> None:
    settings.SEARCH_URL = OPENSEARCH_URL
    cache.clear()


# --------------------------------------------------------------------------- in step


def test_imports_reach_the_index_after_commit_and_a_prune_takes_cars_out(
    opensearch, client, tmp_path, caplog
):
    import_rows(tmp_path, ROWS)
    assert sorted(indexed(opensearch).values()) == [
        "Aurora GT",
        "Boreal Estate",
        "Citroën Traction",
    ]
    assert search(client, "citroan") == (["Citroën Traction"], "citro%C3%ABn")

    report = import_rows(tmp_path, ROWS[:2], prune=True)
    assert report.counts.deleted == 1
    assert sorted(indexed(opensearch).values()) == ["Aurora GT", "Boreal Estate"]
    # Its words left with it: no result, and no correction toward a deleted car's word.
    assert search(client, "citroen") == ([], None)
    assert search(client, "citroan") == ([], None)
    assert DEGRADED not in caplog.text


def test_a_feeds_other_columns_are_indexed_as_keywords(opensearch, tmp_path, caplog):
    """A feed's attributes (SPEC §3), whatever their column names, reach the index as
    keywords ready for filters and facets, and indexing them never fails the import."""
    source = tmp_path / "feed.csv"
    source.write_text(
        "id,title,Option1 Value,Image URLs (x;y),a.b,price\n"
        "v1,Aurora GT,S - Ø 30 cm,x,dotted,11995 GBP\n"
        "v2,Boreal Estate,M,y,,9500 GBP\n",
        encoding="utf-8",
    )
    report = run_import(source=str(source), workers=1)
    assert report.counts.created == 2, report.summary()
    opensearch.indices.refresh(index=settings.SEARCH_INDEX)
    body = {"query": {"term": {"attributes.price": "11995 GBP"}}}
    hits = opensearch.search(index=settings.SEARCH_INDEX, body=body)["hits"]["hits"]
    assert [hit["_source"]["title"] for hit in hits] == ["Aurora GT"]
    assert hits[0]["_source"]["attributes"]["Option1 Value"] == "S - Ø 30 cm"
    assert "could not" not in caplog.text.lower()


def test_a_dry_run_and_an_unchanged_import_send_nothing_to_the_index(opensearch, tmp_path):
    import_rows(tmp_path, ROWS)
    before = indexed(opensearch)
    stats = opensearch.indices.stats(index=settings.SEARCH_INDEX, metric="indexing")
    writes = stats["_all"]["primaries"]["indexing"]["index_total"]
    import_rows(tmp_path, ROWS)  # unchanged
    write_csv(tmp_path / "other.csv", [["new", "Zephyr GT", "New.", ""]])
    run_import(source=str(tmp_path / "other.csv"), workers=1, dry_run=True, prune=True)
    stats = opensearch.indices.stats(index=settings.SEARCH_INDEX, metric="indexing")
    assert stats["_all"]["primaries"]["indexing"]["index_total"] == writes
    assert indexed(opensearch) == before


def test_admin_edits_and_deletes_reach_the_index(opensearch, admin_client, tmp_path):
    import_rows(tmp_path, ROWS)
    pk = Car.objects.get(title="Boreal Estate").pk
    form = {"title": "Boreal Tourer", "description": "Green and electric.", "source_image_url": ""}
    assert admin_client.post(f"/admin/cars/car/{pk}/change/", form).status_code == 302
    assert indexed(opensearch)[pk] == "Boreal Tourer"
    assert titles(admin_client, "electrc") == ["Boreal Tourer"]
    assert titles(admin_client, "diesel") == []

    response = admin_client.post(f"/admin/cars/car/{pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert pk not in indexed(opensearch)


def test_a_car_the_database_lost_never_shows(opensearch, client, tmp_path):
    import_rows(tmp_path, ROWS)
    pk = Car.objects.get(title="Aurora GT").pk
    Car.objects.filter(pk=pk).delete()  # around cars.services: the index still has it
    bump_catalog_version()
    assert pk in indexed(opensearch)
    for query in ("aurora", "aurra", "red tourer", "a"):
        assert "Aurora GT" not in titles(client, query), query
    assert titles(client, "saloon") == ["Citroën Traction"]


# --------------------------------------------------------------------------- rebuilding


def test_the_rebuild_swaps_the_alias_while_searches_keep_answering(opensearch, tmp_path, caplog):
    words = ("red", "blue", "green", "black")
    rows = [
        CarRow(key=f"k{i}", title=f"Aurora {words[i % 4]} {i}", description=f"Tourer number {i}.")
        for i in range(4000)
    ]
    with transaction.atomic():
        upsert_cars(rows)
    old = behind(opensearch, settings.SEARCH_INDEX)
    queries = ["aurra blue", "tourer", "green aurora", "blakc", "numbr 7"]
    expected = {q: search(Client(), q, limit=5) for q in queries}
    assert all(found for found, _ in expected.values()), expected

    answers: list[tuple[str, object]] = []
    rebuilding, stop = threading.Event(), threading.Event()

    def searcher() -> None:
        client, n = Client(), 0
        try:
            while not stop.is_set():
                query = queries[n % len(queries)]
                # A parameter of its own per request: the response cache never answers.
                response = client.get("/api/cars/", {"search": query, "limit": 5, "n": n})
                got = (
                    [car["title"] for car in response.json()] if response.status_code == 200 else []
                )
                got = (got, response.get("X-Search-Corrected"))
                answers.append((query, got if rebuilding.is_set() else None))
                n += 1
        except Exception as exc:  # an assertion in a thread would be lost
            answers.append(("error", exc))
        finally:
            connection.close()

    thread = threading.Thread(target=searcher)
    thread.start()
    try:
        time.sleep(0.5)
        rebuilding.set()
        out = io.StringIO()
        call_command("search_index", "--rebuild", stdout=out)
        rebuilding.clear()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(30)

    during = [(q, got) for q, got in answers if got is not None]
    assert len(during) >= 10, f"only {len(during)} searches while the rebuild ran"
    wrong = [(q, got) for q, got in during if got != expected.get(q)]
    assert not wrong, wrong[:3]
    assert DEGRADED not in caplog.text
    new = behind(opensearch, settings.SEARCH_INDEX)
    assert len(new) == 1 and new != old
    assert new[0].startswith(f"{settings.SEARCH_INDEX}-")
    assert not opensearch.indices.exists(index=old[0]), "the old index is deleted"
    assert f"indexed 4000 cars into {new[0]}" in out.getvalue()
    assert opensearch.count(index=settings.SEARCH_INDEX)["count"] == 4000


def test_the_rebuild_refuses_without_an_engine(settings):
    settings.SEARCH_URL = ""
    with pytest.raises(CommandError, match="SEARCH_URL is not set"):
        call_command("search_index", "--rebuild")


def test_a_rebuild_refuses_while_another_holds_the_alias_lock(opensearch):
    """The lock taken by another thread, as another process would hold it: its own
    database connection (PostgreSQL's advisory lock) or its own file descriptor (SQLite's
    flock). The alias and its index are left alone; once the lock is let go, it rebuilds."""
    taken, release = threading.Event(), threading.Event()

    def holder() -> None:
        try:
            with rebuild_lock(settings.SEARCH_INDEX):
                taken.set()
                release.wait(60)
        finally:
            connection.close()

    before = behind(opensearch, settings.SEARCH_INDEX)
    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert taken.wait(30)
        with pytest.raises(CommandError, match=r"another rebuild of .* is running"):
            call_command("search_index", "--rebuild", stdout=io.StringIO())
        assert behind(opensearch, settings.SEARCH_INDEX) == before
    finally:
        release.set()
        thread.join(30)
    call_command("search_index", "--rebuild", stdout=io.StringIO())
    assert behind(opensearch, settings.SEARCH_INDEX) != before


def test_a_first_write_builds_the_missing_index(opensearch, client, tmp_path, caplog):
    delete_indices(settings.SEARCH_INDEX)  # SEARCH_URL just set: no index yet
    assert titles(client, "aurora") == []  # (the database answers meanwhile)
    import_rows(tmp_path, ROWS)
    assert len(behind(opensearch, settings.SEARCH_INDEX)) == 1
    caplog.clear()
    assert search(client, "aurra") == (["Aurora GT"], "aurora")
    assert DEGRADED not in caplog.text


# --------------------------------------------------------------------------- failures


def test_with_the_engine_down_search_answers_from_the_database_and_readyz_names_it(
    opensearch, client, tmp_path, settings, caplog
):
    import_rows(tmp_path, ROWS)
    queries = ["aurra", "famly disel", "citroen", "toure", "blue estate"]
    answers = {q: search(client, q) for q in queries}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == ["database", "cache", "storage", "search"]
    assert DEGRADED not in caplog.text

    engine_down(settings)
    assert {q: search(client, q) for q in queries} == answers
    assert DEGRADED in caplog.text  # logged: degraded, not silent
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["search"]

    engine_up(settings)
    assert client.get("/readyz").status_code == 200


def test_an_index_a_crash_left_behind_is_repaired_by_the_rebuild(
    opensearch, client, tmp_path, settings, caplog
):
    """What a process killed between its commit and its indexing (or mid-way through its
    bulk requests) leaves: the database changed, the index partly or not at all. Search
    never shows a car the database lost meanwhile; `search_index --rebuild` repairs."""
    import_rows(tmp_path, ROWS)
    alias = settings.SEARCH_INDEX
    aurora = Car.objects.get(title="Aurora GT").pk

    engine_down(settings)
    rows = [
        ["boreal", "Boreal Estate", "Blue family estate, now electric.", ""],
        ["citroen", "Citroën Traction", "Black classic saloon from Paris.", ""],
        ["zephyr", "Zephyr Coupe", "A green coupe.", ""],
        ["yukon", "Yukon Wagon", "A grey wagon.", ""],
    ]
    report = import_rows(tmp_path, rows, prune=True)  # it succeeds: the index is not its data
    assert (report.counts.created, report.counts.updated, report.counts.deleted) == (2, 1, 1)
    assert "lags the database" in caplog.text
    engine_up(settings)
    # Partly indexed: the first of its bulk requests went through, the others never did.
    sync([Car.objects.get(title="Zephyr Coupe").pk])
    # And a rebuild killed before its swap left an index behind no alias.
    orphan = f"{alias}-20000101000000000000"
    opensearch.indices.create(index=orphan, body={"settings": {"number_of_replicas": 0}})

    assert titles(client, "zephyr") == ["Zephyr Coupe"]
    assert titles(client, "yukon") == []  # lagging...
    assert titles(client, "electric") == []
    assert aurora in indexed(opensearch)  # ...but the car the database lost never shows:
    assert titles(client, "aurora") == [] and titles(client, "red") == []

    call_command("search_index", "--rebuild", stdout=io.StringIO())
    cache.clear()
    assert titles(client, "yukon") == ["Yukon Wagon"]
    assert titles(client, "electrc") == ["Boreal Estate"]
    assert sorted(indexed(opensearch).values()) == [
        "Boreal Estate",
        "Citroën Traction",
        "Yukon Wagon",
        "Zephyr Coupe",
    ]
    assert not opensearch.indices.exists(index=orphan)


def test_sites_sharing_a_cluster_see_only_their_own_cars(opensearch, client, tmp_path, settings):
    site, other = settings.SEARCH_INDEX, f"{settings.SEARCH_INDEX}-eu"
    try:
        settings.SEARCH_INDEX = other
        rebuild()  # the other site's index, empty: its database has no car
        settings.SEARCH_INDEX = site
        import_rows(tmp_path, ROWS)
        call_command("search_index", "--rebuild", stdout=io.StringIO())  # leaves `-eu` alone

        assert len(indexed(opensearch, site)) == 3
        assert indexed(opensearch, other) == {}
        assert titles(client, "aurora") == ["Aurora GT"]
        settings.SEARCH_INDEX = other
        cache.clear()
        assert titles(client, "aurora") == []  # the other index answers: it has no car
    finally:
        delete_indices(other)


# --------------------------------------------------------------------------- queued


@pytest.mark.stack
def test_a_queued_import_indexes_its_cars_in_its_own_task_on_the_worker(
    tmp_path, http_server, search_run_index
):
    """web, a Celery worker (Redis, PostgreSQL when available) and the node: the row
    phase's task indexes what it committed, so the web process serves it from the engine."""
    require_opensearch()
    alias = f"{search_run_index}-stack"
    body = "id,title,description,image\n1,Alpha,Red and fast,\n2,Beta,Blue estate,\n"
    http_server.add("/cars.csv", body.encode(), headers={"ETag": '"v1"'})
    env = {
        "SEARCH_URL": OPENSEARCH_URL,
        "SEARCH_INDEX": alias,
        "SEARCH_REPLICAS": "0",
        "SEARCH_REFRESH": "true",
    }
    try:
        with running_stack(tmp_path / "stack", env, beat=False) as stack:
            stack.manage("search_index", "--rebuild")  # empty: the database has no car yet
            out = stack.manage(
                "shell",
                "-c",
                "from imports.jobs import submit_job; from imports.lifecycle import create_job;"
                f"job = create_job(source={http_server.url('/cars.csv')!r}, trigger='api');"
                "submit_job(job); print(job.pk)",
            )
            job_id = int(out.strip().splitlines()[-1])

            def finished():
                rows = stack.query(f"SELECT status FROM imports_importjob WHERE id = {job_id}")
                return rows and rows[0][0] in ("succeeded", "failed") and rows[0][0]

            assert stack.wait_for("the job to finish on the worker", finished) == "succeeded"
            assert "run_import_job" in stack.log("worker")
            engine = OpenSearch(hosts=[OPENSEARCH_URL])
            assert sorted(indexed(engine, alias).values()) == ["Alpha", "Beta"]
            response = stack.get("/api/cars/", params={"search": "alpah"})
            assert [car["title"] for car in response.json()] == ["Alpha"]
            assert response.headers["X-Search-Corrected"] == "alpha"
            assert DEGRADED not in stack.log("web")
    finally:
        delete_indices(alias)


# --------------------------------------------------------------------------- killed processes


CRASH_ROWS = 20_000  # enough bulk requests (1000 cars each) to be caught between two


def _site(tmp_path, alias: str) -> dict[str, str]:
    """A project of its own (SQLite file) on the node under `alias`, with ROWS indexed."""
    require_opensearch()
    env = project_env(
        tmp_path / "site", SEARCH_URL=OPENSEARCH_URL, SEARCH_INDEX=alias, SEARCH_REPLICAS="0"
    )
    (tmp_path / "site").mkdir()
    migrate(env)
    result = manage(env, "import_csv", str(write_csv(tmp_path / "first.csv", ROWS)))
    assert result.returncode == 0, result.stderr[-2000:]  # the first write builds the index
    return env


def _database_ids(env) -> set[int]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return {pk for (pk,) in db.execute("SELECT id FROM cars_car")}


def _index_ids(engine, alias: str) -> set[int]:
    engine.indices.refresh(index=alias)
    hits = scan(engine, index=alias, query={"query": {"match_all": {}}, "_source": False})
    return {int(hit["_id"]) for hit in hits}


def _indexed_ops(engine, index: str) -> int:
    stats = engine.indices.stats(index=index, metric="indexing")
    return stats["_all"]["primaries"]["indexing"]["index_total"]


def _stop_once(process: subprocess.Popen, ready, what: str) -> None:
    """SIGSTOP `process` as soon as `ready()`: frozen mid-way, whatever the machine's load."""
    deadline = time.monotonic() + 120
    while not ready():
        assert process.poll() is None, f"{what}: the process ended before it was caught"
        assert time.monotonic() < deadline, f"{what}: not reached in 120 s"
        time.sleep(0.01)
    process.send_signal(signal.SIGSTOP)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def test_an_import_killed_mid_indexing_is_repaired_by_the_rebuild(tmp_path, search_run_index):
    """`import_csv` SIGKILLed between two of its bulk requests, after its commit: the
    database has every car, the index some. Nothing repairs that on its own (the heartbeat
    sweep recovers the job, not the index; the next import indexes only its own cars);
    `search_index --rebuild` does, and the index then holds exactly the database's cars."""
    require_opensearch()  # before the `finally` below, which asks the node
    alias = f"{search_run_index}-killed-import"
    engine = OpenSearch(hosts=[OPENSEARCH_URL])
    try:
        env = _site(tmp_path, alias)
        (index,) = behind(engine, alias)
        before = _indexed_ops(engine, index)
        rows = [[f"car{i}", f"Car {i}", f"Number {i}.", ""] for i in range(CRASH_ROWS)]
        csv_path = write_csv(tmp_path / "big.csv", rows)
        process = subprocess.Popen(
            [sys.executable, "manage.py", "import_csv", str(csv_path), "--no-progress"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _stop_once(process, lambda: _indexed_ops(engine, index) > before, "indexing")
        finally:
            _kill(process)

        in_database = _database_ids(env)
        assert len(in_database) == len(ROWS) + CRASH_ROWS  # committed before its indexing
        lagging = _index_ids(engine, alias)
        assert lagging < in_database and len(lagging) < len(in_database), "nothing lost"

        result = manage(env, "search_index", "--rebuild")
        assert result.returncode == 0, result.stderr[-2000:]
        assert _index_ids(engine, alias) == in_database
    finally:
        delete_indices(alias)


def test_one_rebuild_at_a_time_and_a_killed_one_blocks_nothing(tmp_path, search_run_index):
    """A second `search_index --rebuild` refuses while one runs (here frozen mid-way: its
    new index filling); once that one is SIGKILLed the lock is gone with it, the alias
    still names the old index, and the next rebuild deletes the half-built one."""
    require_opensearch()  # before the `finally` below, which asks the node
    alias = f"{search_run_index}-one-rebuild"
    engine = OpenSearch(hosts=[OPENSEARCH_URL])
    try:
        env = _site(tmp_path, alias)
        rows = [[f"car{i}", f"Car {i}", f"Number {i}.", ""] for i in range(CRASH_ROWS)]
        result = manage(env, "import_csv", str(write_csv(tmp_path / "big.csv", rows)))
        assert result.returncode == 0, result.stderr[-2000:]
        (old,) = behind(engine, alias)

        def filling() -> str | None:
            built = engine.indices.get(index=f"{alias}-*", expand_wildcards="open")
            new = [name for name in built if name != old]
            return new[0] if new and _indexed_ops(engine, new[0]) > 0 else None

        first = subprocess.Popen(
            [sys.executable, "manage.py", "search_index", "--rebuild"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _stop_once(first, filling, "the first rebuild's indexing")
            half_built = filling()
            second = manage(env, "search_index", "--rebuild")
            assert second.returncode == 1, second.stdout
            assert f"another rebuild of {alias} is running" in second.stderr
            assert behind(engine, alias) == [old]
            assert engine.indices.exists(index=half_built), "the second left it alone"
        finally:
            _kill(first)

        third = manage(env, "search_index", "--rebuild")
        assert third.returncode == 0, third.stderr[-2000:]
        (new,) = behind(engine, alias)
        assert new not in (old, half_built)
        assert not engine.indices.exists(index=half_built), "the orphan is deleted"
        assert _index_ids(engine, alias) == _database_ids(env)
    finally:
        delete_indices(alias)

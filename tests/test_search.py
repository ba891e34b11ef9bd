"""Search, end to end on the real database.

Every test runs on SQLite (FTS5) and on PostgreSQL (`DATABASE_URL=postgres://...`), and
asserts the same answers on both. The catalogue is imported from a real CSV by the real
importer, which builds the search vocabulary in its transaction.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cars.models import Car, SearchWord
from imports.services import run_import
from tests.support.catalog import write_csv

ROWS = [
    ["aurora", "Aurora GT", "A red grand tourer with a long bonnet, built for motorway miles."],
    ["boreal", "Boreal Estate", "Blue family estate; 600 litres of boot and a quiet diesel."],
    ["citroen", "Citroën Traction", "Black classic saloon from Paris."],
    ["renault", "Renault Clio", "Small grey city car."],
    ["hudson", "Hudson Coupe", "Chrome coupe with a hornet on the bonnet."],
    ["cornets", "Cornets Cornets", "Brass band bus."],
    ["sunny", "Sunny Day", "An open roadster for the coast."],
    ["roadstar", "Roadstar Roadstar", "Roadstar special."],
    ["model", "Model 2018", "The 2018 edition."],
]


@pytest.fixture
def source(tmp_path) -> Path:
    return tmp_path / "cars.csv"


@pytest.fixture
def cars(db, source) -> dict[str, int]:
    """The catalogue above, imported; title → id."""
    write_csv(source, [[*row, ""] for row in ROWS])
    report = run_import(source=str(source), workers=1)
    assert (report.counts.created, report.counts.rejected) == (len(ROWS), 0), report.summary()
    return dict(Car.objects.values_list("title", "pk"))


def search(client, query: str, path: str = "/api/cars/", **params):
    response = client.get(path, {"search": query, **params})
    assert response.status_code == 200, response.content[:300]
    return response


def titles(response) -> list[str]:
    return [car["title"] for car in response.json()]


def vocabulary() -> dict[str, tuple[str, int]]:
    """The search vocabulary: word → (spelling, occurrences)."""
    rows = SearchWord.objects.values_list("word", "spelling", "occurrences")
    return {word: (spelling, occurrences) for word, spelling, occurrences in rows}


# --------------------------------------------------------------------------- accents and case


@pytest.mark.parametrize("query", ["citroen", "CITROEN", "Citroën", "citroë"])
def test_accents_and_case_are_folded_on_the_text(client, cars, query):
    assert titles(search(client, query)) == ["Citroën Traction"]


@pytest.mark.parametrize("query", ["rénault", "RENAULT", "rênault clïo"])
def test_accents_and_case_are_folded_on_the_query(client, cars, query):
    assert titles(search(client, query)) == ["Renault Clio"]


# --------------------------------------------------------------------------- the vocabulary


def test_the_import_builds_the_vocabulary_folded_and_without_numbers(cars):
    words = vocabulary()
    assert words["citroen"] == ("citroën", 1)  # folded, spelled as the catalogue does
    assert words["aurora"] == ("aurora", 1)
    assert words["bonnet"] == ("bonnet", 2)
    assert "2018" not in words and "600" not in words  # numbers are never corrected


def test_a_new_import_brings_its_words_and_takes_the_old_ones_away(client, cars, source):
    rows = [[*row, ""] for row in ROWS if row[0] != "boreal"]
    rows[0] = ["aurora", "Zephyr GT", "A red grand tourer.", ""]
    write_csv(source, rows)
    report = run_import(source=str(source), workers=1, prune=True)
    assert (report.counts.updated, report.counts.deleted) == (1, 1), report.summary()

    words = vocabulary()
    assert words["zephyr"] == ("zephyr", 1)
    assert "aurora" not in words and "family" not in words  # they left with their cars
    assert words["bonnet"] == ("bonnet", 1)


def test_an_import_that_changes_nothing_leaves_the_vocabulary_alone(cars, source):
    before = vocabulary()
    with CaptureQueriesContext(connection) as captured:
        report = run_import(source=str(source), workers=1)
    assert report.counts.unchanged == len(ROWS)
    assert not [q for q in captured.captured_queries if "cars_searchword" in q["sql"]]
    assert vocabulary() == before


def test_a_dry_run_leaves_the_vocabulary_as_it_was(client, cars, source):
    before = vocabulary()
    write_csv(source, [["new", "Zephyr GT", "A new car.", ""]])
    run_import(source=str(source), workers=1, dry_run=True, prune=True)
    assert vocabulary() == before

"""Search, end to end on the real database.

Every test runs on SQLite (FTS5) and on PostgreSQL (`DATABASE_URL=postgres://...`), and
asserts the same answers on both. The catalogue is imported from a real CSV by the real
importer.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cars.models import Car
from imports.services import run_import
from tests.support.catalog import write_csv

ROWS = [
    ["aurora", "Aurora GT", "A red grand tourer with a long bonnet, built for motorway miles."],
    ["boreal", "Boreal Estate", "Blue family estate; 600 litres of boot and a quiet diesel."],
    ["citroen", "Citroën Traction", "Black classic saloon from Paris."],
    ["renault", "Renault Clio", "Small grey city car."],
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


# --------------------------------------------------------------------------- accents and case


@pytest.mark.parametrize("query", ["citroen", "CITROEN", "Citroën", "citroë"])
def test_accents_and_case_are_folded_on_the_text(client, cars, query):
    assert titles(search(client, query)) == ["Citroën Traction"]


@pytest.mark.parametrize("query", ["rénault", "RENAULT", "rênault clïo"])
def test_accents_and_case_are_folded_on_the_query(client, cars, query):
    assert titles(search(client, query)) == ["Renault Clio"]

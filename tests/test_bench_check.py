"""`bench/run.py --check` (CI): a row fails only when it is worse than half its target.

The comparison is judged on a fabricated table; the harness itself runs in
tests/test_bench_smoke.py.
"""

import pytest

from bench.report import Row, at_least, at_most, check, info, regressed, regressions, within


@pytest.mark.parametrize(
    ("row", "worse"),
    [
        (at_least("speed-up met", "", "", 1.2, 1.0), False),
        (at_least("speed-up missed, within slack", "", "", 0.51, 1.0), False),
        (at_least("speed-up at half its goal", "", "", 0.5, 1.0), False),
        (at_least("speed-up below half", "", "", 0.49, 1.0), True),
        (at_least("0.9× goal", "", "", 0.44, 0.9), True),
        (at_most("slow-down met", "", "", 1.3, 1.5), False),
        (at_most("slow-down missed, within slack", "", "", 2.9, 1.5), False),
        (at_most("slow-down at twice its goal", "", "", 3.0, 1.5), False),
        (at_most("slow-down beyond twice", "", "", 3.01, 1.5), True),
        (within("bytes off by the tolerance", "", "", 1.05, 0.05), False),
        (within("bytes off by twice the tolerance", "", "", 0.9, 0.05), False),
        (within("bytes off by more", "", "", 0.89, 0.05), True),
        (within("bytes off by more, above", "", "", 1.11, 0.05), True),
        (check("checks ok", "", "", True), False),
        (check("a check failed", "", "", False), True),
        (info("information", "", "", 0.01), False),
        (at_least("reference not measured", "", "n/a", None, 1.0), False),
        (at_most("reference not measured", "", "n/a", None, 1.5), False),
    ],
    ids=lambda value: value.benchmark if isinstance(value, Row) else str(value),
)
def test_a_row_regresses_only_beyond_half_its_target(row, worse):
    assert regressed(row) is worse


def test_regressions_lists_the_rows_beyond_half_their_target_and_nothing_else():
    table = [
        info("bare WSGI (the limit)", "7,000 req/s"),
        at_least("cached page vs cached minimal view", "", "", 0.95, 0.9),
        at_least("304 vs cached minimal view", "", "", 0.4, 0.9),
        at_most("deep page vs first page", "", "", 3.5, 1.5),
        at_most("typo search", "", "", 2.0, 3),
        check("import complete", "", "", True),
        Row("api", "ERROR", "", None, "", False, "wrk failed"),  # run.py's own exit status
    ]

    worse = regressions(table)

    assert [row.benchmark for row in worse] == [
        "304 vs cached minimal view",
        "deep page vs first page",
    ]


def test_the_slack_is_a_parameter():
    row = at_least("cached page", "", "", 0.8, 0.9)
    assert not regressed(row)
    assert regressed(row, slack=1.0)

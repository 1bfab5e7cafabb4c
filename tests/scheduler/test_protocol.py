from datetime import date

import pytest

from scheduler.protocol import add_months


@pytest.mark.parametrize(
    ("anchor", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 1, 31), 2, date(2026, 3, 31)),
        (date(2026, 1, 31), 3, date(2026, 4, 30)),
        (date(2026, 1, 5), 12, date(2027, 1, 5)),
        (date(2026, 1, 5), 0, date(2026, 1, 5)),
        (date(2026, 12, 15), 1, date(2027, 1, 15)),
        (date(2026, 3, 31), -1, date(2026, 2, 28)),
        (date(2028, 2, 29), 12, date(2029, 2, 28)),
        (date(2028, 2, 29), 48, date(2032, 2, 29)),
        (date(2100, 1, 31), 1, date(2100, 2, 28)),  # not a leap year
        (date(2000, 1, 31), 1, date(2000, 2, 29)),  # a leap year
    ],
)
def test_add_months_clamps_to_month_end(anchor: date, months: int, expected: date) -> None:
    assert add_months(anchor, months) == expected


def test_add_months_from_anchor_does_not_drift_where_chaining_would() -> None:
    anchor = date(2026, 1, 31)
    chained = anchor
    for _ in range(2):
        chained = add_months(chained, 1)
    assert chained == date(2026, 3, 28)
    assert add_months(anchor, 2) == date(2026, 3, 31)

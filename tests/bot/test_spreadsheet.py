"""CSV cells that no spreadsheet runs as a formula (OWASP CSV injection)."""

from datetime import UTC, datetime

import pytest

from bot.spreadsheet import safe_cell


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=HYPERLINK(1)", "'=HYPERLINK(1)"),
        ("+A1", "'+A1"),
        ("-A1", "'-A1"),
        ("@SUM(1)", "'@SUM(1)"),
        ("\tA1", "'\tA1"),
        ("\rA1", "'\rA1"),
        ("MS-001", "MS-001"),
        ("", ""),
        (None, ""),
        (-3, "-3"),
        (2.5, "2.5"),
        (datetime(2026, 2, 5, 8, tzinfo=UTC), "2026-02-05T08:00:00+00:00"),
    ],
)
def test_formula_starts_are_quoted_and_the_rest_is_kept(value: object, cell: str) -> None:
    assert safe_cell(value) == cell

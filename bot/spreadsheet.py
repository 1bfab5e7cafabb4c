"""CSV cells that a spreadsheet shows as text, never runs as a formula."""

from __future__ import annotations

# OWASP "CSV injection": a cell starting with one of these is read as a formula by Excel,
# LibreOffice and Google Sheets; a leading apostrophe makes it plain text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> str:
    """``value`` as CSV cell text, prefixed with ``'`` where it would start a formula.

    Numbers are written as they are: ``-3`` is a number, not a formula.
    """
    if value is None:
        return ""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text

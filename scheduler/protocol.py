"""The alemtuzumab monitoring protocol as constants and calendar arithmetic (PROTOCOL.md)."""

from __future__ import annotations

from datetime import date, time
from enum import StrEnum
from typing import Final


class Kind(StrEnum):
    """Reminder kinds; the values are stored, exported and used as catalog keys."""

    COURSE_UPCOMING = "course_upcoming"
    POST_INFUSION_WARNING = "post_infusion_warning"
    ANTIVIRAL_PROPHYLAXIS = "antiviral_prophylaxis"
    LABS_MONTHLY = "labs_monthly"
    THYROID_QUARTERLY = "thyroid_quarterly"
    CONTRACEPTION = "contraception"
    CONTRACEPTION_END = "contraception_end"
    COURSE_DUE = "course_due"
    ANNUAL_SCREENING = "annual_screening"
    MONITORING_END = "monitoring_end"


# Ties at one instant are listed in the protocol's order.
KIND_ORDER: Final = {kind: rank for rank, kind in enumerate(Kind)}

TEST_KINDS: Final = frozenset({Kind.LABS_MONTHLY, Kind.THYROID_QUARTERLY})
CBP_ONLY_KINDS: Final = frozenset({Kind.CONTRACEPTION, Kind.CONTRACEPTION_END})

FIRST_COURSE_DAYS: Final = 5
LATER_COURSE_DAYS: Final = 3
MIN_COURSE_DAYS: Final = 1
MAX_COURSE_DAYS: Final = 5
EU_MAX_COURSES: Final = 4

COURSE_INTERVAL_MONTHS: Final = 12
# Clinics schedule around the 12-month mark; a course may start this many days early.
COURSE_WINDOW_DAYS: Final = 30
UPCOMING_DAYS_BEFORE: Final = (7, 1)
POST_INFUSION_DAYS_AFTER: Final = 3
POST_INFUSION_TIME: Final = time(18, 0)

DEFAULT_PROPHYLAXIS_DAYS: Final = 30
MAX_PROPHYLAXIS_DAYS: Final = 365
CONTRACEPTION_MONTHS: Final = 4
MONITORING_MONTHS: Final = 48

DEFAULT_SEND_TIME: Final = time(9, 0)
EARLIEST_SEND_TIME: Final = time(7, 0)
LATEST_SEND_TIME: Final = time(21, 0)

_DAYS_IN_MONTH: Final = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _days_in_month(year: int, month: int) -> int:
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        return 29
    return _DAYS_IN_MONTH[month - 1]


def add_months(anchor: date, months: int) -> date:
    """``anchor`` plus whole calendar months, clamped to the last day of the target month.

    Always count from the same anchor (``add_months(a, 2)``), never chain
    (``add_months(add_months(a, 1), 1)``): a clamped day would drift.
    """
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    day = anchor.day
    if day > 28:  # every month has the 28 first days
        day = min(day, _days_in_month(year, month0 + 1))
    return date(year, month0 + 1, day)

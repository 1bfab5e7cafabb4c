"""Turn what a coordinator typed into planner input, or raise one clear error.

Every function either returns a complete, valid value or raises a
:class:`~scheduler.errors.ValidationError`; nothing is half-built.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Collection, Sequence
from datetime import date, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from scheduler.errors import (
    CoursesOutOfOrder,
    CourseTooEarly,
    InvalidCourseDays,
    InvalidDate,
    InvalidProphylaxisDays,
    InvalidSendTime,
    NoCourses,
    SendTimeOutOfRange,
    TooManyCourses,
    UnknownTimezone,
    UnsupportedLocale,
    ValidationWarning,
)
from scheduler.planner import Course, Profile
from scheduler.protocol import (
    COURSE_INTERVAL_MONTHS,
    COURSE_WINDOW_DAYS,
    DEFAULT_PROPHYLAXIS_DAYS,
    DEFAULT_SEND_TIME,
    EARLIEST_SEND_TIME,
    EU_MAX_COURSES,
    FIRST_COURSE_DAYS,
    LATER_COURSE_DAYS,
    LATEST_SEND_TIME,
    MAX_COURSE_DAYS,
    MAX_PROPHYLAXIS_DAYS,
    MIN_COURSE_DAYS,
    add_months,
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)

CourseSpec = tuple[date, int | None]
"""A course as entered: its start date and, if given, its number of infusion days."""


def parse_date(text: str) -> date:
    """A calendar date written as YYYY-MM-DD."""
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidDate(value=value)


def parse_course(text: str, *, number: int) -> CourseSpec:
    """``DATE`` or ``DATE:DAYS``, as on the command line and in CSV files."""
    start, sep, days = text.strip().partition(":")
    if not sep:
        return parse_date(start), None
    return parse_date(start), parse_course_days(days, number=number)


def parse_course_days(text: str, *, number: int) -> int:
    """A number of infusion days, 1 to 5."""
    value = text.strip()
    if value.isascii() and value.isdigit() and MIN_COURSE_DAYS <= int(value) <= MAX_COURSE_DAYS:
        return int(value)
    raise InvalidCourseDays(number=number, value=value)


def default_course_days(number: int) -> int:
    """Infusion days of course ``number`` when the coordinator does not say otherwise."""
    return FIRST_COURSE_DAYS if number == 1 else LATER_COURSE_DAYS


def earliest_next_start(previous: Course) -> date:
    """The first day the following course may start without an override."""
    opens = add_months(previous.start, COURSE_INTERVAL_MONTHS)
    return opens - timedelta(days=COURSE_WINDOW_DAYS)


def next_course(
    recorded: Sequence[Course], start: date, days: int | None, *, allow_early: bool = False
) -> tuple[Course, list[ValidationWarning]]:
    """The course after ``recorded`` (already accepted), checked against the last of them.

    ``allow_early`` is the coordinator's confirmed override for a course that starts less
    than 12 months (minus the 30-day window) after the previous one.
    """
    number = len(recorded) + 1
    if days is None:
        days = default_course_days(number)
    elif not MIN_COURSE_DAYS <= days <= MAX_COURSE_DAYS:
        raise InvalidCourseDays(number=number, value=str(days))
    if recorded:
        previous = recorded[-1]
        if start <= previous.end:
            raise CoursesOutOfOrder(
                number=number,
                start=start.isoformat(),
                previous=number - 1,
                previous_end=previous.end.isoformat(),
            )
        if start < earliest_next_start(previous) and not allow_early:
            raise CourseTooEarly(
                number=number,
                start=start.isoformat(),
                previous=number - 1,
                previous_start=previous.start.isoformat(),
                earliest=earliest_next_start(previous).isoformat(),
            )
    warnings: list[ValidationWarning] = []
    if number > EU_MAX_COURSES:
        warnings.append(TooManyCourses(number=number, limit=EU_MAX_COURSES))
    return Course(start, days), warnings


def build_courses(
    specs: Sequence[CourseSpec], *, allow_early: bool = False
) -> tuple[tuple[Course, ...], list[ValidationWarning]]:
    """Courses with their default days filled in, each checked against the one before."""
    if not specs:
        raise NoCourses()
    courses: list[Course] = []
    warnings: list[ValidationWarning] = []
    for start, days in specs:
        course, more = next_course(courses, start, days, allow_early=allow_early)
        courses.append(course)
        warnings += more
    return tuple(courses), warnings


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def parse_timezone(text: str) -> ZoneInfo:
    """An IANA time zone such as ``Europe/Berlin``."""
    name = text.strip()
    if name not in _known_zones():
        raise UnknownTimezone(value=name)
    return ZoneInfo(name)


def parse_send_time(text: str) -> time:
    """A local send time ``HH:MM`` between 07:00 and 21:00."""
    value = text.strip()
    match = _TIME.fullmatch(value)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise InvalidSendTime(value=value)
    at = time(int(match[1]), int(match[2]))
    if not EARLIEST_SEND_TIME <= at <= LATEST_SEND_TIME:
        raise SendTimeOutOfRange(
            value=at.strftime("%H:%M"),
            earliest=EARLIEST_SEND_TIME.strftime("%H:%M"),
            latest=LATEST_SEND_TIME.strftime("%H:%M"),
        )
    return at


def check_prophylaxis_days(days: int) -> int:
    """Anti-herpes prophylaxis after each course: at least 30 days, the coordinator may add."""
    if not DEFAULT_PROPHYLAXIS_DAYS <= days <= MAX_PROPHYLAXIS_DAYS:
        raise InvalidProphylaxisDays(
            value=days, minimum=DEFAULT_PROPHYLAXIS_DAYS, maximum=MAX_PROPHYLAXIS_DAYS
        )
    return days


def check_locale(code: str, available: Collection[str]) -> str:
    """One of the locales the bot ships."""
    value = code.strip()
    if value not in available:
        raise UnsupportedLocale(value=value, choices=", ".join(sorted(available)))
    return value


def build_profile(
    *,
    courses: Sequence[CourseSpec],
    timezone: str,
    send_time: str | None = None,
    cbp: bool = False,
    prophylaxis_days: int = DEFAULT_PROPHYLAXIS_DAYS,
    allow_early_course: bool = False,
) -> tuple[Profile, list[ValidationWarning]]:
    """A planner profile from enrolment answers, every rule checked before anything is built."""
    checked, warnings = build_courses(courses, allow_early=allow_early_course)
    profile = Profile(
        courses=checked,
        timezone=parse_timezone(timezone),
        send_time=DEFAULT_SEND_TIME if send_time is None else parse_send_time(send_time),
        cbp=cbp,
        prophylaxis_days=check_prophylaxis_days(prophylaxis_days),
    )
    return profile, warnings

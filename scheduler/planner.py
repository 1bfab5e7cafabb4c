"""The reminder plan: pure functions from a patient's courses and preferences to dated items.

Every date rule of PROTOCOL.md lives in one small generator below; ``RULES`` lists them.
Nothing here reads the clock or does I/O.

Courses can overlap (an early course, or a long prophylaxis): per kind, the items of several
courses that fall on one local date are one item, keeping the occurrence key of the
earliest course, and an instruction "until <date>" names the latest end among the courses
that cover its day (PROTOCOL.md, "Overlapping courses").

Local wall times are turned into instants with the zone's rules for that date. A send
time that does not exist on a spring-forward day (02:30 in a 02:00→03:00 gap) is moved
forward by the length of the gap (03:30); a send time that happens twice on a fall-back
day is the first of the two (PEP 495 ``fold=0``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from typing import NamedTuple
from zoneinfo import ZoneInfo

from scheduler.protocol import (
    CONTRACEPTION_MONTHS,
    COURSE_INTERVAL_MONTHS,
    COURSE_WINDOW_DAYS,
    DEFAULT_PROPHYLAXIS_DAYS,
    DEFAULT_SEND_TIME,
    MONITORING_MONTHS,
    POST_INFUSION_DAYS_AFTER,
    POST_INFUSION_TIME,
    UPCOMING_DAYS_BEFORE,
    Kind,
    add_months,
)

_WEEK = timedelta(days=7)
_DAY = timedelta(days=1)
_COURSE_WINDOW = timedelta(days=COURSE_WINDOW_DAYS)
_UPCOMING = tuple((before, timedelta(days=before)) for before in UPCOMING_DAYS_BEFORE)
# Called for every item: looked up once. ``_new_item(PlanItem, fields)`` is
# ``PlanItem(*fields)`` without NamedTuple's Python-level __new__ (a tenth of the time).
_combine = datetime.combine
_new_item = tuple.__new__


@dataclass(frozen=True, slots=True)
class Course:
    """A treatment course: its first infusion day and its number of infusion days."""

    start: date
    days: int

    @property
    def end(self) -> date:
        """The last infusion day (``E_k``)."""
        return self.start + timedelta(days=self.days - 1)


@dataclass(frozen=True, slots=True)
class Profile:
    """What the planner needs to know about one patient. Courses are in date order."""

    courses: tuple[Course, ...]
    timezone: ZoneInfo
    send_time: time = DEFAULT_SEND_TIME
    cbp: bool = False
    prophylaxis_days: int = DEFAULT_PROPHYLAXIS_DAYS

    @property
    def anchor(self) -> date:
        """The monitoring anchor ``A``: the first day of course 1."""
        return self.courses[0].start

    @property
    def last_infusion(self) -> date:
        """``L``: the last infusion day of the latest course."""
        return self.courses[-1].end

    @property
    def monitoring_end(self) -> date:
        """``L + 48 months``: the last day a monitoring reminder may fall on."""
        return add_months(self.last_infusion, MONITORING_MONTHS)


class PlanItem(NamedTuple):
    """One reminder of the plan.

    ``occurrence`` identifies the item within its kind and stays the same when the plan
    is recomputed after a new course or a change of timezone or send time.
    ``course`` is the 1-based course number for course-bound kinds, else ``None``.
    ``about`` is the date the message speaks of, where it names one: the course start,
    the end of prophylaxis or of contraception, the next course, the end of monitoring.
    """

    kind: Kind
    occurrence: str
    day: date
    due: datetime
    course: int | None
    about: date | None


# (occurrence, local date, course number or None, the date the message speaks of or None)
_Dates = Iterator[tuple[str, date, int | None, date | None]]
# A course's "until" instruction: its first day, the first day it no longer covers, and the
# date the message names.
_Period = tuple[date, date, date]


@dataclass(frozen=True, slots=True)
class Rule:
    """How one kind is dated: its generator, its local time, whether only CBP gets it, and
    for an instruction that lasts until a date, each course's period (its item names the
    latest end among the periods that cover its day)."""

    kind: Kind
    dates: Callable[[Profile], _Dates]
    at: time | None = None  # None: the patient's send time
    cbp_only: bool = False
    periods: Callable[[Profile], list[_Period]] | None = None


def _course_upcoming(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        for before, ahead in _UPCOMING:
            yield f"c{number}-{before}d", course.start - ahead, number, course.start


def _post_infusion_warning(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        day = course.start
        for offset in range(course.days + POST_INFUSION_DAYS_AFTER):
            yield f"c{number}-d{offset}", day, number, None
            day += _DAY


def _antiviral_prophylaxis(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        until = course.end + timedelta(days=profile.prophylaxis_days)
        week, day = 0, course.start
        while day <= until:
            yield f"c{number}-w{week}", day, number, until
            week += 1
            day += _WEEK


def _prophylaxis_periods(profile: Profile) -> list[_Period]:
    """Anti-herpes prophylaxis from each course's first day to ``E_k + P days``."""
    extra = timedelta(days=profile.prophylaxis_days)
    periods = []
    for course in profile.courses:
        until = course.end + extra
        periods.append((course.start, until + _DAY, until))
    return periods


def _every_months(step: int) -> Callable[[Profile], _Dates]:
    def dates(profile: Profile) -> _Dates:
        anchor, last = profile.anchor, profile.monitoring_end
        months = step
        day = add_months(anchor, months)
        while day <= last:
            yield f"m{months}", day, None, None
            months += step
            day = add_months(anchor, months)

    return dates


def _contraception(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        until = add_months(course.end, CONTRACEPTION_MONTHS)
        months, day = 0, course.start
        while day < until:
            yield f"c{number}-m{months}", day, number, until
            months += 1
            day = add_months(course.start, months)


def _contraception_periods(profile: Profile) -> list[_Period]:
    """Contraception from each course's first day until ``E_k + 4 months`` (exclusive)."""
    periods = []
    for course in profile.courses:
        until = add_months(course.end, CONTRACEPTION_MONTHS)
        periods.append((course.start, until, until))
    return periods


def _latest_end(periods: list[_Period], day: date) -> date:
    """The latest end among the periods that cover ``day``."""
    return max(end for start, stop, end in periods if start <= day < stop)


def _contraception_end(profile: Profile) -> _Dates:
    courses = profile.courses
    for number, course in enumerate(courses, start=1):
        day = add_months(course.end, CONTRACEPTION_MONTHS)
        next_start = courses[number].start if number < len(courses) else None
        if next_start is None or next_start >= day:
            yield f"c{number}", day, number, day


def _course_due(profile: Profile) -> _Dates:
    if len(profile.courses) == 1:
        opens = add_months(profile.anchor, COURSE_INTERVAL_MONTHS)
        yield "c2", opens - _COURSE_WINDOW, 2, opens


def _monitoring_end(profile: Profile) -> _Dates:
    end = profile.monitoring_end
    yield "end", end, None, end


RULES: tuple[Rule, ...] = (
    Rule(Kind.COURSE_UPCOMING, _course_upcoming),
    Rule(Kind.POST_INFUSION_WARNING, _post_infusion_warning, at=POST_INFUSION_TIME),
    Rule(Kind.ANTIVIRAL_PROPHYLAXIS, _antiviral_prophylaxis, periods=_prophylaxis_periods),
    Rule(Kind.LABS_MONTHLY, _every_months(1)),
    Rule(Kind.THYROID_QUARTERLY, _every_months(3)),
    Rule(Kind.CONTRACEPTION, _contraception, cbp_only=True, periods=_contraception_periods),
    Rule(Kind.CONTRACEPTION_END, _contraception_end, cbp_only=True),
    Rule(Kind.COURSE_DUE, _course_due),
    Rule(Kind.ANNUAL_SCREENING, _every_months(12)),
    Rule(Kind.MONITORING_END, _monitoring_end),
)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The aware instant of wall time ``at`` on ``day`` in ``zone`` (see module docstring)."""
    return _instant(day, at, at.replace(fold=1), zone)


def _instant(day: date, at: time, at_fold: time, zone: ZoneInfo) -> datetime:
    """``local_instant``, with ``at_fold`` = ``at`` with fold=1 given by the caller."""
    local = _combine(day, at, zone)
    # The offsets of the two folds differ only near a transition; fold=0's is the smaller
    # one only inside a DST gap (PEP 495). There, the round trip through UTC turns the wall
    # time into a real one; anywhere else it would give ``local`` back, so it is skipped.
    first, second = zone.utcoffset(local), zone.utcoffset(_combine(day, at_fold))
    assert first is not None  # a ZoneInfo always has an offset
    assert second is not None
    if at.fold or first < second:
        return local.astimezone(UTC).astimezone(zone)
    return local


def plan(profile: Profile) -> list[PlanItem]:
    """Every reminder of ``profile``'s programme, ordered by due instant, then kind."""
    if not profile.courses:
        return []
    zone = profile.timezone
    several = len(profile.courses) > 1
    items: list[PlanItem] = []
    for rule in RULES:
        if rule.cbp_only and not profile.cbp:
            continue
        kind = rule.kind
        at = rule.at or profile.send_time
        at_fold = at.replace(fold=1)
        periods = rule.periods(profile) if rule.periods is not None and several else None
        # One item per local date; generators go course by course, so the first is the
        # earliest course's. With one course, no day repeats within a kind and an item's
        # own course is the only one that covers it: nothing to merge.
        on_day: dict[date, int] = {}
        for occurrence, day, course, about in rule.dates(profile):
            if several:
                if periods is not None:
                    about = _latest_end(periods, day)
                kept = on_day.get(day)
                if kept is not None:
                    earlier = items[kept]
                    if about is not None and (earlier.about is None or about > earlier.about):
                        items[kept] = earlier._replace(about=about)
                    continue
                on_day[day] = len(items)
            due = _instant(day, at, at_fold, zone)
            items.append(_new_item(PlanItem, (kind, occurrence, day, due, course, about)))
    # RULES are in protocol order and the sort is stable: ties stay in kind order.
    items.sort(key=attrgetter("due"))
    return items

"""The planner against its earlier, plainer version (commit e8fc3df), kept here as the
reference: the faster planner must give exactly the same items, field for field (with the
UTC offset and PEP 495 fold of every due instant), on many generated patients."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from operator import attrgetter
from zoneinfo import ZoneInfo, available_timezones

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.planner import Course, PlanItem, Profile, local_instant, plan
from scheduler.protocol import Kind

# --- the reference: the planner as it was, in one piece ---------------------------------------

_Dates = Iterator[tuple[str, date, int | None, date | None]]


def _add_months(anchor: date, months: int) -> date:
    year, month0 = divmod(anchor.year * 12 + anchor.month - 1 + months, 12)
    month = month0 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(anchor.day, last))


def _end(course: Course) -> date:
    return course.start + timedelta(days=course.days - 1)


def _monitoring_end(profile: Profile) -> date:
    return _add_months(_end(profile.courses[-1]), 48)


def _upcoming(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        for before in (7, 1):
            yield (
                f"c{number}-{before}d",
                course.start - timedelta(days=before),
                number,
                course.start,
            )


def _warning(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        for offset in range(course.days + 3):
            yield f"c{number}-d{offset}", course.start + timedelta(days=offset), number, None


def _prophylaxis(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        until = _end(course) + timedelta(days=profile.prophylaxis_days)
        week, day = 0, course.start
        while day <= until:
            yield f"c{number}-w{week}", day, number, until
            week += 1
            day = course.start + week * timedelta(days=7)


def _prophylaxis_until(profile: Profile, day: date) -> date:
    return max(
        end
        for course in profile.courses
        if course.start <= day <= (end := _end(course) + timedelta(days=profile.prophylaxis_days))
    )


def _every(step: int) -> Callable[[Profile], _Dates]:
    def dates(profile: Profile) -> _Dates:
        anchor, last = profile.courses[0].start, _monitoring_end(profile)
        months = step
        while (day := _add_months(anchor, months)) <= last:
            yield f"m{months}", day, None, None
            months += step

    return dates


def _contraception(profile: Profile) -> _Dates:
    for number, course in enumerate(profile.courses, start=1):
        until = _add_months(_end(course), 4)
        months, day = 0, course.start
        while day < until:
            yield f"c{number}-m{months}", day, number, until
            months += 1
            day = _add_months(course.start, months)


def _contraception_until(profile: Profile, day: date) -> date:
    return max(
        end
        for course in profile.courses
        if course.start <= day < (end := _add_months(_end(course), 4))
    )


def _contraception_end(profile: Profile) -> _Dates:
    courses = profile.courses
    for number, course in enumerate(courses, start=1):
        day = _add_months(_end(course), 4)
        if number == len(courses) or courses[number].start >= day:
            yield f"c{number}", day, number, day


def _course_due(profile: Profile) -> _Dates:
    if len(profile.courses) == 1:
        opens = _add_months(profile.courses[0].start, 12)
        yield "c2", opens - timedelta(days=30), 2, opens


def _end_of_monitoring(profile: Profile) -> _Dates:
    yield "end", _monitoring_end(profile), None, _monitoring_end(profile)


_Until = Callable[[Profile, date], date] | None
_RULES: tuple[tuple[Kind, Callable[[Profile], _Dates], time | None, bool, _Until], ...] = (
    (Kind.COURSE_UPCOMING, _upcoming, None, False, None),
    (Kind.POST_INFUSION_WARNING, _warning, time(18, 0), False, None),
    (Kind.ANTIVIRAL_PROPHYLAXIS, _prophylaxis, None, False, _prophylaxis_until),
    (Kind.LABS_MONTHLY, _every(1), None, False, None),
    (Kind.THYROID_QUARTERLY, _every(3), None, False, None),
    (Kind.CONTRACEPTION, _contraception, None, True, _contraception_until),
    (Kind.CONTRACEPTION_END, _contraception_end, None, True, None),
    (Kind.COURSE_DUE, _course_due, None, False, None),
    (Kind.ANNUAL_SCREENING, _every(12), None, False, None),
    (Kind.MONITORING_END, _end_of_monitoring, None, False, None),
)


def _reference_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at, zone).astimezone(UTC).astimezone(zone)


def reference_plan(profile: Profile) -> list[PlanItem]:
    if not profile.courses:
        return []
    items: list[PlanItem] = []
    for kind, dates, at, cbp_only, until in _RULES:
        if cbp_only and not profile.cbp:
            continue
        on_day: dict[date, int] = {}
        for occurrence, day, course, about in dates(profile):
            if until is not None:
                about = until(profile, day)
            kept = on_day.get(day)
            if kept is not None:
                earlier = items[kept]
                if about is not None and (earlier.about is None or about > earlier.about):
                    items[kept] = earlier._replace(about=about)
                continue
            due = _reference_instant(day, at or profile.send_time, profile.timezone)
            on_day[day] = len(items)
            items.append(PlanItem(kind, occurrence, day, due, course, about))
    items.sort(key=attrgetter("due"))
    return items


# --- the comparison --------------------------------------------------------------------------


def exactly(items: list[PlanItem]) -> list[tuple[object, ...]]:
    """Every field, and what equality of aware datetimes leaves out: offset, fold, zone."""
    return [
        (*item, item.due.utcoffset(), item.due.fold, item.due.tzinfo, item.due.isoformat())
        for item in items
    ]


ZONES = sorted(available_timezones() - {"Factory", "localtime"})
# Zones with DST gaps or odd offsets, drawn more often than the rest.
TRICKY = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Tehran",
    "America/Santiago",
    "Pacific/Apia",
    "America/St_Johns",
    "Asia/Kathmandu",
    "Africa/Casablanca",
]


@st.composite
def profiles(draw: st.DrawFn) -> Profile:
    start = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2045, 12, 31)))
    courses = [Course(start, draw(st.integers(1, 5)))]
    for _ in range(draw(st.integers(0, 4))):
        later = courses[-1].start + timedelta(days=draw(st.integers(1, 900)))
        courses.append(Course(later, draw(st.integers(1, 5))))
    zone = draw(st.sampled_from(TRICKY) | st.sampled_from(ZONES))
    return Profile(
        courses=tuple(courses),
        timezone=ZoneInfo(zone),
        # Any wall time, inside DST gaps and folds too (the planner takes what it is given).
        send_time=time(draw(st.integers(0, 23)), draw(st.sampled_from([0, 15, 30, 45, 59]))),
        cbp=draw(st.booleans()),
        prophylaxis_days=draw(st.integers(1, 400)),
    )


@settings(max_examples=600)
@given(profiles())
def test_plan_is_the_reference_plan(profile: Profile) -> None:
    assert exactly(plan(profile)) == exactly(reference_plan(profile))


def test_plan_is_the_reference_plan_for_many_seeded_patients() -> None:
    rng = random.Random(20261202)
    for _ in range(1000):
        start = date(2020, 1, 1) + timedelta(days=rng.randrange(20 * 365))
        courses = [Course(start, rng.randint(1, 5))]
        for _ in range(rng.choice((0, 1, 1, 2, 3))):
            gap = rng.choice((rng.randrange(1, 120), rng.randrange(330, 500)))
            courses.append(Course(courses[-1].start + timedelta(days=gap), rng.randint(1, 5)))
        profile = Profile(
            courses=tuple(courses),
            timezone=ZoneInfo(rng.choice(TRICKY + ZONES[::7])),
            send_time=time(rng.randrange(24), rng.choice((0, 30, 45))),
            cbp=rng.random() < 0.5,
            prophylaxis_days=rng.choice((30, 60, 365)),
        )
        assert exactly(plan(profile)) == exactly(reference_plan(profile)), profile


@settings(max_examples=1000)
@given(
    st.dates(min_value=date(1990, 1, 1), max_value=date(2060, 12, 31)),
    st.times(),
    st.sampled_from(TRICKY) | st.sampled_from(ZONES),
)
def test_local_instant_is_the_round_trip_through_utc(day: date, at: time, zone: str) -> None:
    tz = ZoneInfo(zone)
    due, expected = local_instant(day, at, tz), _reference_instant(day, at, tz)
    assert (due, due.utcoffset(), due.fold, due.isoformat()) == (
        expected,
        expected.utcoffset(),
        expected.fold,
        expected.isoformat(),
    )


def test_local_instant_on_every_transition_day_of_a_zone() -> None:
    # Each day of 2026 and 2040 (beyond the tz database's table: the POSIX rule) at every
    # half hour and 15 minutes past, in zones with 1-hour, 30-minute and odd-offset changes.
    for zone in (ZoneInfo(name) for name in TRICKY):
        for first in (date(2026, 1, 1), date(2040, 1, 1)):
            for offset in range(366):
                day = first + timedelta(days=offset)
                for minute in (*range(0, 24 * 60, 30), *range(15, 24 * 60, 60)):
                    at = time(minute // 60, minute % 60)
                    due, expected = local_instant(day, at, zone), _reference_instant(day, at, zone)
                    assert (due.isoformat(), due.fold) == (expected.isoformat(), expected.fold)

"""Invariants of the plan over many generated course histories."""

from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.planner import Course, Profile, plan
from scheduler.protocol import CONTRACEPTION_MONTHS, POST_INFUSION_TIME, Kind, add_months

# Zones whose DST changes all happen outside 07:00-21:00, the allowed send times.
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/Santiago",
    "Pacific/Auckland",
    "UTC",
]
MONITORING_KINDS = {
    Kind.LABS_MONTHLY,
    Kind.THYROID_QUARTERLY,
    Kind.ANNUAL_SCREENING,
    Kind.MONITORING_END,
}


@st.composite
def profiles(draw: st.DrawFn, *, early: bool = False) -> Profile:
    """Course histories; with ``early``, later courses may start any day after the previous
    one (an early course the coordinator confirmed), so that courses overlap."""
    start = draw(st.dates(min_value=date(2015, 1, 1), max_value=date(2035, 12, 31)))
    courses = [Course(start, draw(st.integers(1, 5)))]
    for _ in range(draw(st.integers(0, 4))):
        previous = courses[-1].start
        if early:
            later = previous + timedelta(days=draw(st.integers(1, 400)))
        else:
            later = add_months(previous, 12) - timedelta(days=30 - draw(st.integers(0, 800)))
        courses.append(Course(later, draw(st.integers(1, 5))))
    return Profile(
        courses=tuple(courses),
        timezone=ZoneInfo(draw(st.sampled_from(ZONES))),
        send_time=time(draw(st.integers(7, 20)), draw(st.integers(0, 59))),
        cbp=draw(st.booleans()),
        prophylaxis_days=draw(st.integers(30, 365)),
    )


@settings(max_examples=300)
@given(profiles())
def test_plan_invariants(profile: Profile) -> None:
    items = plan(profile)
    dues = [item.due for item in items]
    assert dues == sorted(dues)

    keys = [(item.kind, item.occurrence) for item in items]
    assert len(keys) == len(set(keys))

    end = profile.monitoring_end
    assert all(item.day <= end for item in items if item.kind in MONITORING_KINDS)

    for item in items:
        assert item.due.tzinfo is profile.timezone
        assert item.due.date() == item.day
        expected = (
            POST_INFUSION_TIME if item.kind is Kind.POST_INFUSION_WARNING else (profile.send_time)
        )
        assert item.due.time() == expected


def _covering_ends(profile: Profile, item_kind: Kind, day: date) -> list[date]:
    """The ends of the instruction of every course that covers ``day``."""
    if item_kind is Kind.ANTIVIRAL_PROPHYLAXIS:
        ends = [c.end + timedelta(days=profile.prophylaxis_days) for c in profile.courses]
    else:
        ends = [add_months(c.end, CONTRACEPTION_MONTHS) for c in profile.courses]
    return [
        end
        for course, end in zip(profile.courses, ends, strict=True)
        if course.start <= day
        and (day <= end if item_kind is Kind.ANTIVIRAL_PROPHYLAXIS else day < end)
    ]


@settings(max_examples=300)
@given(profiles(early=True))
def test_overlapping_courses_give_one_item_per_kind_and_instant(profile: Profile) -> None:
    items = plan(profile)
    instants = [(item.kind, item.due) for item in items]
    assert len(instants) == len(set(instants)), "two reminders of one kind at one instant"
    for item in items:
        if item.kind in {Kind.ANTIVIRAL_PROPHYLAXIS, Kind.CONTRACEPTION}:
            ends = _covering_ends(profile, item.kind, item.day)
            assert ends, item
            assert item.about == max(ends), item


@settings(max_examples=100)
@given(profiles())
def test_keys_are_stable_when_a_course_is_added(profile: Profile) -> None:
    later = add_months(profile.courses[-1].start, 12)
    extended = Profile(
        courses=(*profile.courses, Course(later, 3)),
        timezone=profile.timezone,
        send_time=profile.send_time,
        cbp=profile.cbp,
        prophylaxis_days=profile.prophylaxis_days,
    )
    after = {(item.kind, item.occurrence): item for item in plan(extended)}
    for item in plan(profile):
        if item.kind in {Kind.MONITORING_END, Kind.COURSE_DUE}:
            continue  # moved or withdrawn by the new course, by design
        kept = after[item.kind, item.occurrence]
        # A new course that covers the day can only make an "until" date later.
        assert kept._replace(about=item.about) == item
        assert kept.about == item.about or (kept.about and item.about and kept.about > item.about)

from collections import Counter
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from scheduler.planner import Course, PlanItem, Profile, local_instant, plan
from scheduler.protocol import Kind

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
KOLKATA = ZoneInfo("Asia/Kolkata")

WORKED_COURSES = (Course(date(2026, 1, 5), 5), Course(date(2027, 1, 4), 3))


def worked_example(*, cbp: bool = False) -> Profile:
    return Profile(courses=WORKED_COURSES, timezone=BERLIN, send_time=time(9, 0), cbp=cbp)


def of_kind(items: list[PlanItem], kind: Kind) -> list[PlanItem]:
    return [item for item in items if item.kind is kind]


def days(items: list[PlanItem], kind: Kind) -> list[date]:
    return [item.day for item in of_kind(items, kind)]


class TestWorkedExample:
    """PROTOCOL.md's worked example, item by item."""

    def test_derived_dates(self) -> None:
        profile = worked_example()
        assert profile.courses[0].end == date(2026, 1, 9)
        assert profile.last_infusion == date(2027, 1, 6)
        assert profile.monitoring_end == date(2031, 1, 6)

    def test_counts_per_kind(self) -> None:
        counts = Counter(item.kind for item in plan(worked_example()))
        assert counts == {
            Kind.COURSE_UPCOMING: 4,
            Kind.POST_INFUSION_WARNING: 14,
            Kind.ANTIVIRAL_PROPHYLAXIS: 10,
            Kind.LABS_MONTHLY: 60,
            Kind.THYROID_QUARTERLY: 20,
            Kind.ANNUAL_SCREENING: 5,
            Kind.MONITORING_END: 1,
        }

    def test_labs_monthly(self) -> None:
        labs = of_kind(plan(worked_example()), Kind.LABS_MONTHLY)
        assert labs[0].due == datetime(2026, 2, 5, 9, 0, tzinfo=BERLIN)
        assert labs[0].due.isoformat() == "2026-02-05T09:00:00+01:00"
        assert labs[-1].day == date(2031, 1, 5)
        assert [item.occurrence for item in labs] == [f"m{n}" for n in range(1, 61)]
        july = next(item for item in labs if item.day == date(2026, 7, 5))
        assert july.due.isoformat() == "2026-07-05T09:00:00+02:00"
        assert july.due.astimezone(UTC) == datetime(2026, 7, 5, 7, 0, tzinfo=UTC)

    def test_thyroid_quarterly(self) -> None:
        thyroid = days(plan(worked_example()), Kind.THYROID_QUARTERLY)
        assert thyroid[0] == date(2026, 4, 5)
        assert thyroid[-1] == date(2031, 1, 5)
        assert len(thyroid) == 20

    def test_post_infusion_warning_at_six_pm(self) -> None:
        warnings = of_kind(plan(worked_example()), Kind.POST_INFUSION_WARNING)
        assert [item.day for item in warnings] == [
            *(date(2026, 1, d) for d in range(5, 13)),
            *(date(2027, 1, d) for d in range(4, 10)),
        ]
        assert {item.due.time() for item in warnings} == {time(18, 0)}
        assert [item.course for item in warnings] == [1] * 8 + [2] * 6

    def test_course_bound_items(self) -> None:
        items = plan(worked_example())
        assert days(items, Kind.COURSE_UPCOMING) == [
            date(2025, 12, 29),
            date(2026, 1, 4),
            date(2026, 12, 28),
            date(2027, 1, 3),
        ]
        assert days(items, Kind.ANTIVIRAL_PROPHYLAXIS) == [
            date(2026, 1, 5),
            date(2026, 1, 12),
            date(2026, 1, 19),
            date(2026, 1, 26),
            date(2026, 2, 2),  # last on or before E_1 + 30 days = 2026-02-08
            date(2027, 1, 4),
            date(2027, 1, 11),
            date(2027, 1, 18),
            date(2027, 1, 25),
            date(2027, 2, 1),  # last on or before E_2 + 30 days = 2027-02-05
        ]

    def test_items_name_the_date_they_speak_of(self) -> None:
        items = plan(worked_example(cbp=True))
        about = {(item.kind, item.occurrence): item.about for item in items}
        assert about[Kind.COURSE_UPCOMING, "c2-7d"] == date(2027, 1, 4)
        assert about[Kind.ANTIVIRAL_PROPHYLAXIS, "c1-w0"] == date(2026, 2, 8)
        assert about[Kind.CONTRACEPTION, "c1-m0"] == date(2026, 5, 9)
        assert about[Kind.CONTRACEPTION_END, "c2"] == date(2027, 5, 6)
        assert about[Kind.MONITORING_END, "end"] == date(2031, 1, 6)
        assert about[Kind.LABS_MONTHLY, "m1"] is None
        assert about[Kind.POST_INFUSION_WARNING, "c1-d0"] is None

    def test_screening_and_end(self) -> None:
        items = plan(worked_example())
        assert days(items, Kind.ANNUAL_SCREENING) == [date(y, 1, 5) for y in range(2027, 2032)]
        assert days(items, Kind.MONITORING_END) == [date(2031, 1, 6)]
        assert days(items, Kind.COURSE_DUE) == []  # course 2 is recorded

    def test_same_instant_items_keep_protocol_order(self) -> None:
        items = plan(worked_example())
        april = [item.kind for item in items if item.day == date(2026, 4, 5)]
        assert april == [Kind.LABS_MONTHLY, Kind.THYROID_QUARTERLY]


def test_course_due_only_while_one_course() -> None:
    profile = Profile(courses=WORKED_COURSES[:1], timezone=BERLIN)
    due = of_kind(plan(profile), Kind.COURSE_DUE)
    assert [(item.day, item.occurrence, item.course, item.about) for item in due] == [
        (date(2026, 12, 6), "c2", 2, date(2027, 1, 5))
    ]


@pytest.mark.parametrize(
    ("anchor", "expected_day"),
    [
        (date(2026, 1, 31), 31),
        (date(2028, 2, 29), 29),
        (date(2026, 1, 30), 30),
    ],
)
def test_month_end_anchor_never_drifts(anchor: date, expected_day: int) -> None:
    profile = Profile(courses=(Course(anchor, 5),), timezone=BERLIN)
    labs = days(plan(profile), Kind.LABS_MONTHLY)
    assert len(labs) >= 48
    for day in labs:
        next_month = date(day.year + day.month // 12, day.month % 12 + 1, 1)
        last_of_month = (next_month - date(day.year, day.month, 1)).days
        assert day.day == min(expected_day, last_of_month)


def test_january_31_anchor_dates() -> None:
    profile = Profile(courses=(Course(date(2026, 1, 31), 5),), timezone=BERLIN)
    labs = days(plan(profile), Kind.LABS_MONTHLY)
    assert labs[:4] == [date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30), date(2026, 5, 31)]
    assert date(2028, 2, 29) in labs  # leap year
    assert labs[-1] == date(2030, 1, 31)  # L = 2026-02-04, L + 48 months = 2030-02-04


def test_leap_day_anchor_dates() -> None:
    profile = Profile(courses=(Course(date(2028, 2, 29), 5),), timezone=BERLIN)
    labs = days(plan(profile), Kind.LABS_MONTHLY)
    assert labs[0] == date(2028, 3, 29)
    assert date(2029, 2, 28) in labs
    assert date(2032, 2, 29) in labs
    assert all(day.day == 29 for day in labs if day.month != 2)


class TestDaylightSaving:
    @staticmethod
    def labs_due(zone: ZoneInfo) -> dict[date, datetime]:
        profile = Profile(courses=(Course(date(2026, 1, 5), 5),), timezone=zone)
        return {item.day: item.due for item in of_kind(plan(profile), Kind.LABS_MONTHLY)}

    def test_new_york(self) -> None:
        due = self.labs_due(NEW_YORK)
        assert due[date(2026, 3, 5)].isoformat() == "2026-03-05T09:00:00-05:00"
        assert due[date(2026, 4, 5)].isoformat() == "2026-04-05T09:00:00-04:00"
        assert due[date(2026, 11, 5)].isoformat() == "2026-11-05T09:00:00-05:00"
        assert due[date(2026, 4, 5)].astimezone(UTC) == datetime(2026, 4, 5, 13, tzinfo=UTC)

    def test_sydney_southern_hemisphere(self) -> None:
        due = self.labs_due(SYDNEY)
        assert due[date(2026, 2, 5)].isoformat() == "2026-02-05T09:00:00+11:00"
        assert due[date(2026, 5, 5)].isoformat() == "2026-05-05T09:00:00+10:00"
        assert due[date(2026, 11, 5)].isoformat() == "2026-11-05T09:00:00+11:00"

    def test_kolkata_half_hour_offset(self) -> None:
        due = self.labs_due(KOLKATA)
        assert due[date(2026, 7, 5)].isoformat() == "2026-07-05T09:00:00+05:30"
        assert due[date(2026, 7, 5)].astimezone(UTC) == datetime(2026, 7, 5, 3, 30, tzinfo=UTC)

    def test_send_time_in_spring_forward_gap_moves_forward(self) -> None:
        # Berlin skips 02:00-03:00 on 2026-03-29; course 1 on Jan 29 puts month 2 there.
        profile = Profile(
            courses=(Course(date(2026, 1, 29), 5),), timezone=BERLIN, send_time=time(2, 30)
        )
        march = next(i for i in plan(profile) if i.day == date(2026, 3, 29))
        assert march.due.isoformat() == "2026-03-29T03:30:00+02:00"
        assert march.due.astimezone(UTC) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)

    def test_gap_in_new_york(self) -> None:
        due = local_instant(date(2026, 3, 8), time(2, 30), NEW_YORK)
        assert due.isoformat() == "2026-03-08T03:30:00-04:00"

    def test_send_time_on_fall_back_day_is_the_first_occurrence(self) -> None:
        due = local_instant(date(2026, 10, 25), time(2, 30), BERLIN)
        assert due.isoformat() == "2026-10-25T02:30:00+02:00"
        assert due.astimezone(UTC) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


def test_third_course_extends_monitoring_and_keeps_earlier_keys() -> None:
    before = plan(worked_example(cbp=True))
    third = Course(date(2028, 1, 10), 3)
    after = plan(
        Profile(courses=(*WORKED_COURSES, third), timezone=BERLIN, send_time=time(9), cbp=True)
    )
    by_key = {(item.kind, item.occurrence): item for item in after}

    assert days(after, Kind.LABS_MONTHLY)[-1] == date(2032, 1, 5)
    assert days(after, Kind.THYROID_QUARTERLY)[-1] == date(2032, 1, 5)
    assert days(after, Kind.MONITORING_END) == [date(2032, 1, 12)]
    assert len(of_kind(after, Kind.LABS_MONTHLY)) == 72

    # Every item planned before the new course still exists with the same key and date.
    for item in before:
        if item.kind is Kind.MONITORING_END:
            continue  # one item, rescheduled in place
        assert by_key[item.kind, item.occurrence] == item
    assert by_key[Kind.MONITORING_END, "end"].day == date(2032, 1, 12)
    assert {i.occurrence for i in after if i.course == 3} >= {"c3-7d", "c3-1d", "c3-d0", "c3-m0"}


class TestContraception:
    def test_not_planned_without_cbp(self) -> None:
        kinds = {item.kind for item in plan(worked_example(cbp=False))}
        assert Kind.CONTRACEPTION not in kinds
        assert Kind.CONTRACEPTION_END not in kinds

    def test_end_is_four_months_after_each_course(self) -> None:
        items = plan(worked_example(cbp=True))
        assert days(items, Kind.CONTRACEPTION_END) == [date(2026, 5, 9), date(2027, 5, 6)]
        assert days(items, Kind.CONTRACEPTION)[:5] == [
            date(2026, 1, 5),
            date(2026, 2, 5),
            date(2026, 3, 5),
            date(2026, 4, 5),
            date(2026, 5, 5),
        ]
        assert len(of_kind(items, Kind.CONTRACEPTION)) == 10

    def test_end_skipped_when_next_course_starts_first(self) -> None:
        courses = (Course(date(2026, 1, 5), 5), Course(date(2026, 3, 2), 3))  # overridden
        items = plan(Profile(courses=courses, timezone=BERLIN, cbp=True))
        end = of_kind(items, Kind.CONTRACEPTION_END)
        assert [(item.course, item.day) for item in end] == [(2, date(2026, 7, 4))]


def test_prophylaxis_days_extend_antiviral_reminders() -> None:
    profile = Profile(courses=WORKED_COURSES[:1], timezone=BERLIN, prophylaxis_days=60)
    antiviral = days(plan(profile), Kind.ANTIVIRAL_PROPHYLAXIS)
    assert antiviral[-1] == date(2026, 3, 9)  # last on or before 2026-01-09 + 60 days
    assert len(antiviral) == 10


def test_no_courses_no_plan() -> None:
    assert plan(Profile(courses=(), timezone=BERLIN)) == []


class TestOverlappingCourses:
    """PROTOCOL.md "Overlapping courses": one item per kind and day, the latest end named."""

    def test_an_early_second_course_gives_one_contraception_reminder_a_month(self) -> None:
        profile = Profile(
            courses=(Course(date(2026, 1, 5), 5), Course(date(2026, 4, 5), 3)),
            timezone=BERLIN,
            cbp=True,
        )
        items = of_kind(plan(profile), Kind.CONTRACEPTION)
        assert [(i.occurrence, i.day, i.about) for i in items] == [
            ("c1-m0", date(2026, 1, 5), date(2026, 5, 9)),
            ("c1-m1", date(2026, 2, 5), date(2026, 5, 9)),
            ("c1-m2", date(2026, 3, 5), date(2026, 5, 9)),
            # Course 2 started: one reminder, course 1's key, course 2's end.
            ("c1-m3", date(2026, 4, 5), date(2026, 8, 7)),
            ("c1-m4", date(2026, 5, 5), date(2026, 8, 7)),
            ("c2-m2", date(2026, 6, 5), date(2026, 8, 7)),
            ("c2-m3", date(2026, 7, 5), date(2026, 8, 7)),
            ("c2-m4", date(2026, 8, 5), date(2026, 8, 7)),
        ]
        assert [(i.day, i.about) for i in of_kind(plan(profile), Kind.CONTRACEPTION_END)] == [
            (date(2026, 8, 7), date(2026, 8, 7))
        ]

    def test_a_year_of_prophylaxis_names_the_later_course_once_it_began(self) -> None:
        profile = Profile(courses=WORKED_COURSES, timezone=BERLIN, prophylaxis_days=365)
        items = of_kind(plan(profile), Kind.ANTIVIRAL_PROPHYLAXIS)
        on = {item.day: item for item in items}
        assert len(on) == len(items)  # no day twice
        assert (on[date(2026, 12, 28)].occurrence, on[date(2026, 12, 28)].about) == (
            "c1-w51",
            date(2027, 1, 9),
        )
        # Course 2's first day is course 1's week 52: one message, "until January 6, 2028".
        assert (on[date(2027, 1, 4)].occurrence, on[date(2027, 1, 4)].about) == (
            "c1-w52",
            date(2028, 1, 6),
        )
        assert [i.occurrence for i in items if i.day > date(2027, 1, 4)][:2] == ["c2-w1", "c2-w2"]
        assert all(i.about == date(2028, 1, 6) for i in items if i.day >= date(2027, 1, 4))
        assert len(items) == 53 + 53 - 1

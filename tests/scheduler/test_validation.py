from datetime import date, time

import pytest

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
    ValidationError,
)
from scheduler.planner import Course
from scheduler.validation import (
    build_courses,
    build_profile,
    check_locale,
    check_prophylaxis_days,
    earliest_next_start,
    parse_course,
    parse_date,
    parse_send_time,
    parse_timezone,
)


@pytest.mark.parametrize("text", ["2026-02-30", "2026-13-01", "05.01.2026", "20260105", "", "soon"])
def test_invalid_dates(text: str) -> None:
    with pytest.raises(InvalidDate, match="is not a valid date"):
        parse_date(text)


def test_parse_course_with_and_without_days() -> None:
    assert parse_course("2026-01-05", number=1) == (date(2026, 1, 5), None)
    assert parse_course(" 2027-01-04:3 ", number=2) == (date(2027, 1, 4), 3)


@pytest.mark.parametrize("text", ["2026-01-05:0", "2026-01-05:6", "2026-01-05:x", "2026-01-05:"])
def test_course_days_out_of_range(text: str) -> None:
    with pytest.raises(InvalidCourseDays) as caught:
        parse_course(text, number=2)
    assert str(caught.value).startswith("Course 2: ")
    assert "1 to 5 infusion days" in str(caught.value)


def test_default_days_are_five_then_three() -> None:
    courses, warnings = build_courses([(date(2026, 1, 5), None), (date(2027, 1, 4), None)])
    assert courses == (Course(date(2026, 1, 5), 5), Course(date(2027, 1, 4), 3))
    assert warnings == []


def test_explicit_days_override_the_default() -> None:
    courses, _ = build_courses([(date(2026, 1, 5), 4), (date(2027, 1, 4), 5)])
    assert [course.days for course in courses] == [4, 5]


def test_no_courses() -> None:
    with pytest.raises(NoCourses):
        build_courses([])


def test_course_too_early_message_and_override() -> None:
    specs = [(date(2026, 1, 5), None), (date(2026, 11, 2), None)]
    with pytest.raises(CourseTooEarly) as caught:
        build_courses(specs)
    assert str(caught.value) == (
        "Course 2 starts 2026-11-02, before 2026-12-06: earlier than 12 months minus 30 days "
        "after course 1 (2026-01-05). Confirm the override if this is intended."
    )
    courses, _ = build_courses(specs, allow_early=True)
    assert courses[1].start == date(2026, 11, 2)


def test_course_window_opens_30_days_before_twelve_months() -> None:
    first = Course(date(2026, 1, 5), 5)
    assert earliest_next_start(first) == date(2026, 12, 6)
    build_courses([(first.start, None), (date(2026, 12, 6), None)])
    with pytest.raises(CourseTooEarly):
        build_courses([(first.start, None), (date(2026, 12, 5), None)])


def test_courses_out_of_order_even_with_override() -> None:
    with pytest.raises(CoursesOutOfOrder) as caught:
        build_courses([(date(2026, 1, 5), None), (date(2026, 1, 8), None)], allow_early=True)
    assert "before course 1 ends (2026-01-09)" in str(caught.value)
    with pytest.raises(CoursesOutOfOrder):
        build_courses([(date(2027, 1, 4), None), (date(2026, 1, 5), None)])


def test_more_than_four_courses_warns() -> None:
    starts = [date(2026 + n, 1, 5) for n in range(5)]
    courses, warnings = build_courses([(start, None) for start in starts])
    assert len(courses) == 5
    assert [type(w) for w in warnings] == [TooManyCourses]
    assert str(warnings[0]).startswith("Course 5: more than 4 courses")


@pytest.mark.parametrize("name", ["Mars/Base", "", "../etc/passwd", "/etc/localtime"])
def test_unknown_timezone(name: str) -> None:
    with pytest.raises(UnknownTimezone):
        parse_timezone(name)


def test_known_timezone() -> None:
    assert parse_timezone(" Asia/Kolkata ").key == "Asia/Kolkata"


@pytest.mark.parametrize("text", ["9", "09:60", "24:00", "nine", "09:00:00", "0900", "٠٩:٠٠"])
def test_invalid_send_time(text: str) -> None:
    with pytest.raises(InvalidSendTime):
        parse_send_time(text)


@pytest.mark.parametrize("text", ["06:59", "21:01", "00:00", "23:30"])
def test_send_time_out_of_range(text: str) -> None:
    with pytest.raises(SendTimeOutOfRange, match="outside 07:00–21:00"):
        parse_send_time(text)


@pytest.mark.parametrize(
    ("text", "expected"), [("07:00", time(7)), ("9:05", time(9, 5)), ("21:00", time(21))]
)
def test_valid_send_time(text: str, expected: time) -> None:
    assert parse_send_time(text) == expected


@pytest.mark.parametrize("days", [0, 29, 366, -1])
def test_prophylaxis_days_out_of_range(days: int) -> None:
    with pytest.raises(InvalidProphylaxisDays):
        check_prophylaxis_days(days)


def test_locale_must_be_shipped() -> None:
    assert check_locale("de", {"en", "de"}) == "de"
    with pytest.raises(UnsupportedLocale, match="Choose one of: de, en"):
        check_locale("xx", {"en", "de"})


def test_build_profile_checks_everything_before_building() -> None:
    with pytest.raises(SendTimeOutOfRange):
        build_profile(courses=[(date(2026, 1, 5), None)], timezone="UTC", send_time="05:00")
    profile, warnings = build_profile(
        courses=[(date(2026, 1, 5), None)], timezone="Europe/Berlin", send_time="08:30", cbp=True
    )
    assert profile.send_time == time(8, 30)
    assert profile.cbp
    assert warnings == []


def test_errors_render_through_a_translation() -> None:
    error = UnknownTimezone(value="Mars/Base")
    translated = error.render(lambda message: message.replace("is not", "ist kein"))
    assert translated.startswith("Mars/Base ist kein a known time zone")
    assert isinstance(error, ValueError)
    assert isinstance(error, ValidationError)

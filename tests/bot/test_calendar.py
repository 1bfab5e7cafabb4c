"""``bot.calendar.plan_calendar``: events that remind, in the patient's language and zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.calendar import plan_calendar
from bot.i18n import translator
from scheduler.planner import PlanItem, plan
from scheduler.protocol import Kind
from scheduler.validation import build_profile
from tests.bot.calendar_checks import Expected, check_reminder_calendar

STAMP = datetime(2025, 12, 29, 8, tzinfo=UTC)


def items(timezone: str) -> list[PlanItem]:
    profile, _ = build_profile(
        courses=[(date(2026, 1, 5), None), (date(2027, 1, 4), 3)], timezone=timezone, cbp=True
    )
    return plan(profile)


def expected(plan_items: list[PlanItem], scope: str = "plan") -> dict[str, Expected]:
    return {
        f"{scope}-{item.kind}-{item.occurrence}@remindbot": Expected(
            item.kind, item.about, item.due
        )
        for item in plan_items
    }


@pytest.mark.parametrize(
    ("locale", "timezone", "cervix"),
    [
        ("en", "Europe/Berlin", True),
        ("ru", "Europe/Moscow", False),
        ("ar", "Asia/Riyadh", True),
        ("en", "America/New_York", False),
    ],
)
def test_every_event_carries_its_message_and_an_alarm_at_its_start(
    locale: str, timezone: str, cervix: bool
) -> None:
    plan_items = items(timezone)
    tr = translator(locale)
    data = plan_calendar(plan_items, tr=tr, cervix=cervix, stamp=STAMP, uid_scope="patient-7")
    check_reminder_calendar(
        data, expected(plan_items, "patient-7"), tr=tr, cervix=cervix, zone=timezone
    )


def test_the_alarm_is_written_as_calendar_apps_write_at_time_of_event() -> None:
    plan_items = items("Europe/Berlin")
    data = plan_calendar(plan_items, tr=translator("en"), cervix=False, stamp=STAMP)
    lines = data.decode().splitlines()
    triggers = [line for line in lines if line.startswith("TRIGGER")]
    assert triggers == ["TRIGGER;RELATED=START:PT0S"] * len(plan_items)
    assert lines.count("ACTION:DISPLAY") == len(plan_items)


def test_each_time_zone_onset_has_an_rdate_of_its_own() -> None:
    data = plan_calendar(items("Europe/Berlin"), tr=translator("en"), cervix=False, stamp=STAMP)
    rdates = [line for line in data.decode().splitlines() if line.startswith("RDATE")]
    assert len(rdates) > 100
    assert not [line for line in rdates if "," in line]


def test_uids_and_texts_do_not_depend_on_when_the_file_is_made() -> None:
    plan_items = items("Europe/Berlin")
    tr = translator("ru")
    first = plan_calendar(plan_items, tr=tr, cervix=True, stamp=STAMP)
    later = plan_calendar(plan_items, tr=tr, cervix=True, stamp=STAMP.replace(year=2026))
    assert first.replace(b"DTSTAMP:2025", b"DTSTAMP:2026") == later


def test_a_naive_time_is_refused() -> None:
    [first, *_] = items("Europe/Berlin")
    naive = first._replace(due=first.due.replace(tzinfo=None))
    tr = translator("en")
    with pytest.raises(ValueError, match="naive"):
        plan_calendar([naive], tr=tr, cervix=False, stamp=STAMP)
    with pytest.raises(ValueError, match="aware"):
        plan_calendar([first], tr=tr, cervix=False, stamp=STAMP.replace(tzinfo=None))


def test_the_kind_title_is_the_summary_in_arabic() -> None:
    labs = next(item for item in items("Asia/Riyadh") if item.kind is Kind.LABS_MONTHLY)
    tr = translator("ar")
    data = plan_calendar([labs], tr=tr, cervix=False, stamp=STAMP)
    assert labs.due.tzinfo == ZoneInfo("Asia/Riyadh")
    assert tr.gettext("Monthly blood and urine tests").encode() in data.replace(b"\r\n ", b"")
    assert tr.gettext("Monthly blood and urine tests") != "Monthly blood and urine tests"

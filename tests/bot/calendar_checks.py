"""Checks of a reminder calendar file, read by two independent parsers: icalendar (which
wrote it) and vobject (which did not), so a file only one of them accepts fails."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple

import vobject  # type: ignore[import-untyped]
from icalendar import Calendar

from bot import messages
from bot.i18n import Translator
from bot.texts import KIND_TITLES
from scheduler.protocol import Kind


class Expected(NamedTuple):
    """What one event stands for: a reminder of ``kind`` about ``about``, sent at ``due``."""

    kind: Kind
    about: date | None
    due: datetime


def check_reminder_calendar(
    data: bytes,
    expected: Mapping[str, Expected],
    *,
    tr: Translator,
    cervix: bool,
    zone: str,
) -> None:
    """Every event of ``data`` is the reminder its UID names in ``expected`` (and every
    reminder has one): it starts at the send time in ``zone``, its summary is the kind's
    title and its description the message text in ``tr``'s language, and it has exactly one
    display alarm that fires at its start."""
    _check_with_icalendar(data, expected, tr=tr, cervix=cervix, zone=zone)
    _check_with_vobject(data, expected, tr=tr, cervix=cervix)


def _texts(reminder: Expected, *, tr: Translator, cervix: bool) -> tuple[str, str]:
    title = tr.gettext(KIND_TITLES[reminder.kind])
    text = messages.reminder_text(reminder.kind, about=reminder.about, cervix=cervix, tr=tr)
    return title, text


def _fires_at(trigger: timedelta | datetime, related: str, start: datetime) -> datetime:
    """When an alarm fires: an absolute trigger, or a duration from the event's start."""
    if isinstance(trigger, datetime):
        return trigger
    assert related == "START"  # the events' ends are not what the patient is reminded of
    return start + trigger


def _check_with_icalendar(
    data: bytes,
    expected: Mapping[str, Expected],
    *,
    tr: Translator,
    cervix: bool,
    zone: str,
) -> None:
    events = Calendar.from_ical(data).walk("VEVENT")
    assert sorted(str(event["UID"]) for event in events) == sorted(expected)
    for event in events:
        reminder = expected[str(event["UID"])]
        title, text = _texts(reminder, tr=tr, cervix=cervix)
        start = event.decoded("DTSTART")
        assert start.tzinfo is not None
        assert event["DTSTART"].params["TZID"] == zone
        assert start == reminder.due
        assert str(event["SUMMARY"]) == title
        assert str(event["DESCRIPTION"]) == text
        alarms = event.walk("VALARM")
        assert len(alarms) == 1, event["UID"]
        [alarm] = alarms
        assert str(alarm["ACTION"]) == "DISPLAY"
        assert str(alarm["DESCRIPTION"]) == title
        related = alarm["TRIGGER"].params.get("RELATED", "START")
        assert _fires_at(alarm.decoded("TRIGGER"), related, start) == start


def _check_with_vobject(
    data: bytes, expected: Mapping[str, Expected], *, tr: Translator, cervix: bool
) -> None:
    calendar: Any = vobject.readOne(data.decode("utf-8"))
    events = calendar.vevent_list
    assert sorted(event.uid.value for event in events) == sorted(expected)
    for event in events:
        reminder = expected[event.uid.value]
        title, text = _texts(reminder, tr=tr, cervix=cervix)
        # vobject reads the time zone from the file's own VTIMEZONE, not from zoneinfo.
        start = event.dtstart.value
        assert start.tzinfo is not None
        assert start == reminder.due
        assert event.summary.value == title
        assert event.description.value == text
        assert len(event.valarm_list) == 1, event.uid.value
        [alarm] = event.valarm_list
        assert alarm.action.value == "DISPLAY"
        assert alarm.description.value == title
        related = alarm.trigger.params.get("RELATED", ["START"])[0]
        assert _fires_at(alarm.trigger.value, related, start) == start

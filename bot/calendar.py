"""The reminder plan as an iCalendar file a patient can import.

Each event is one reminder: it starts at the reminder's send time, its title is the kind's
title, its description the message the patient gets for it (``bot.messages``), and an alarm
at its start makes the phone remind as the bot does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from icalendar import Alarm, Calendar, Event, vDuration

from bot import messages
from bot.i18n import Translator
from bot.texts import KIND_TITLES
from scheduler.planner import PlanItem

EVENT_LENGTH = timedelta(minutes=30)


class _AtStart(vDuration):
    """The zero duration as ``PT0S``: the form Apple Calendar writes for "at time of event"
    (icalendar writes ``P0D``, valid too, but not what calendar apps write themselves)."""

    def __init__(self) -> None:
        super().__init__(timedelta(0))

    def to_ical(self) -> bytes:
        return b"PT0S"


def _alarm(title: str) -> Alarm:
    """A notification at the event's start.

    The trigger is relative to the start rather than an absolute UTC instant: Outlook and
    Android's calendar store a reminder as minutes before the start, so importers turn a
    relative trigger into "at time of event" and may drop an absolute one; and a relative
    alarm moves with the event if the patient moves it.
    """
    alarm = Alarm()
    alarm.add("action", "DISPLAY")
    alarm.add("trigger", _AtStart(), parameters={"RELATED": "START"})
    alarm.add("description", title)  # RFC 5545 requires one on a DISPLAY alarm
    return alarm


def _one_onset_per_rdate(calendar: Calendar) -> None:
    """Give each onset of a VTIMEZONE observance an RDATE of its own.

    icalendar lists them in one comma-separated RDATE. RFC 5545 allows that, but vobject
    reads only the first date of such a list and so puts every summer reminder an hour off;
    one onset per RDATE, as calendar apps write their own zones, reads right in both.
    """
    for zone in calendar.walk("VTIMEZONE"):
        for observance in zone.subcomponents:
            rdates = observance.get("RDATE")
            if rdates is None:
                continue
            lists = rdates if isinstance(rdates, list) else [rdates]
            onsets = [value.dt for dates in lists for value in dates.dts]
            del observance["RDATE"]
            for onset in onsets:
                observance.add("rdate", onset)


def plan_calendar(
    items: Iterable[PlanItem],
    *,
    tr: Translator,
    cervix: bool,
    stamp: datetime,
    uid_scope: str = "plan",
) -> bytes:
    """An ``.ics`` calendar with one timed event per item.

    UIDs are built from ``uid_scope`` (a per-patient key, or ``plan``) and the item's kind
    and occurrence, so importing a newer plan updates events instead of duplicating them.
    ``stamp`` is the DTSTAMP: when this calendar was made. Texts are in ``tr``'s language;
    ``cervix`` adds the cervical screening line to the yearly reminder, as in the message.
    Every time must be aware: a naive one would be read in the phone's own time zone.
    """
    if stamp.tzinfo is None:
        raise ValueError("the calendar stamp must be an aware datetime")
    calendar = Calendar()
    calendar.add("prodid", "-//remindbot//reminder plan//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", tr.gettext("Reminders"))
    for item in items:
        if item.due.tzinfo is None:
            raise ValueError(f"{item.kind} {item.occurrence} is due at a naive time")
        title = tr.gettext(KIND_TITLES[item.kind])
        event = Event()
        event.add("uid", f"{uid_scope}-{item.kind}-{item.occurrence}@remindbot")
        event.add("dtstamp", stamp)
        event.add("dtstart", item.due)
        event.add("dtend", item.due + EVENT_LENGTH)
        event.add("summary", title)
        event.add(
            "description",
            messages.reminder_text(item.kind, about=item.about, cervix=cervix, tr=tr),
        )
        event.add("categories", [item.kind.value])
        event.add_component(_alarm(title))
        calendar.add_component(event)
    calendar.add_missing_timezones()
    _one_onset_per_rdate(calendar)
    return bytes(calendar.to_ical())

"""The reminder plan as an iCalendar file a patient can import."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from icalendar import Calendar, Event

from bot.texts import KIND_TITLES
from scheduler.planner import PlanItem

EVENT_LENGTH = timedelta(minutes=30)


def plan_calendar(
    items: Iterable[PlanItem],
    *,
    gettext: Callable[[str], str],
    stamp: datetime,
    uid_scope: str = "plan",
) -> bytes:
    """An ``.ics`` calendar with one timed event per item.

    UIDs are built from ``uid_scope`` (a per-patient key, or ``plan``) and the item's kind
    and occurrence, so importing a newer plan updates events instead of duplicating them.
    ``stamp`` is the DTSTAMP: when this calendar was made.
    """
    calendar = Calendar()
    calendar.add("prodid", "-//remindbot//reminder plan//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", gettext("Reminders"))
    for item in items:
        event = Event()
        event.add("uid", f"{uid_scope}-{item.kind}-{item.occurrence}@remindbot")
        event.add("dtstamp", stamp)
        event.add("dtstart", item.due)
        event.add("dtend", item.due + EVENT_LENGTH)
        event.add("summary", gettext(KIND_TITLES[item.kind]))
        event.add("categories", [item.kind.value])
        calendar.add_component(event)
    calendar.add_missing_timezones()
    return bytes(calendar.to_ical())

"""Pure decisions about time: what is too late to send, what to skip at enrolment."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from scheduler.planner import PlanItem
from scheduler.protocol import TEST_KINDS, Kind

DEFAULT_LATE_WINDOW = timedelta(hours=72)


def is_too_late(due: datetime, *, now: datetime, late_window: timedelta) -> bool:
    """A reminder more than ``late_window`` overdue is expired instead of sent."""
    return due < now - late_window


def skipped_when_planned(
    items: Sequence[PlanItem], *, now: datetime, late_window: timedelta
) -> set[tuple[Kind, str]]:
    """Keys of items already in the past when they are first planned.

    They are recorded as skipped, except the latest overdue test reminder(s) still inside
    the late window: a patient enrolled two days after a monthly test date still gets it.
    """
    past = [item for item in items if item.due < now]
    overdue_tests = [
        item
        for item in past
        if item.kind in TEST_KINDS and not is_too_late(item.due, now=now, late_window=late_window)
    ]
    latest = max((item.due for item in overdue_tests), default=None)
    return {
        (item.kind, item.occurrence)
        for item in past
        if not (item.kind in TEST_KINDS and item.due == latest)
    }

"""Pure decisions: what is too late to send, what to skip at enrolment, what an outcome of
a send means (the retry ladder). Nothing here reads the clock or the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from scheduler.planner import PlanItem
from scheduler.protocol import TEST_KINDS, Kind
from scheduler.sending import Outcome, Result

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


# --- what to do after a send: the retry ladder -------------------------------------------------


class Verdict(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class RetryBudget:
    """How often and how patiently a message is tried.

    The budget is counted in attempts, 429s included: Telegram's ``retry_after`` is waited
    for (or the back-off, if longer), and every answer that is not a success uses one try.
    """

    max_attempts: int
    first_backoff: timedelta = timedelta(seconds=30)
    max_backoff: timedelta = timedelta(hours=1)
    # After a timeout Telegram may still deliver the message: wait long enough for it to
    # have finished, so that the retry is never sent while the first is still under way.
    after_timeout: timedelta = timedelta(minutes=2)

    def backoff(self, attempts: int) -> timedelta:
        """30 s, 1 min, 2 min, … after the 1st, 2nd, 3rd … failed attempt, at most an hour."""
        delay: timedelta = self.first_backoff * 2 ** max(attempts - 1, 0)
        return min(delay, self.max_backoff)


# Reminders: about an hour of tries (30 s … 32 min); alerts: about five hours.
REMINDER_BUDGET = RetryBudget(max_attempts=8)
ALERT_BUDGET = RetryBudget(max_attempts=12)


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    retry_at: datetime | None = None
    # For the history: why, in words staff read (never message text).
    detail: str | None = None


def decide(
    outcome: Outcome, *, attempts: int, now: datetime, budget: RetryBudget = REMINDER_BUDGET
) -> Decision:
    """What an outcome means for a message tried ``attempts`` times so far (this one
    included): sent, try again at ``retry_at``, or give up."""
    result, description = outcome.result, outcome.description or ""
    if result is Result.SENT:
        return Decision(Verdict.SENT)
    if result in {Result.BLOCKED, Result.REJECTED}:
        return Decision(Verdict.FAIL, detail=description or result.value)
    if result is Result.TIMED_OUT:
        wait = max(budget.backoff(attempts), budget.after_timeout)
        detail = f"timed out, the message may have arrived: {description}".rstrip(": ")
    elif result is Result.RATE_LIMITED:
        # Telegram's wait first; a chat that keeps answering 429 waits longer and longer.
        asked = outcome.retry_after or budget.first_backoff
        wait = asked if attempts <= 1 else max(asked, budget.backoff(attempts - 1))
        detail = description or "rate limited"
    else:
        wait = budget.backoff(attempts)
        detail = description or "no answer"
    if attempts >= budget.max_attempts:
        return Decision(Verdict.FAIL, detail=f"gave up after {attempts} attempts: {detail}")
    return Decision(Verdict.RETRY, retry_at=now + wait, detail=detail)

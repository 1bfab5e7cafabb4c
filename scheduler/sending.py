"""What the dispatcher hands to the Telegram side, and what it gets back.

The scheduler knows nothing of Telegram: ``bot.sender.TelegramSender`` implements ``Sender``,
tests use in-memory ones. A ``Delivery`` is one Telegram message: a patient's reminders due
at the same instant (a bundle), or one page of a bundle too long for one message, or a
follow-up about the tests of a message that were not confirmed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from scheduler.protocol import Kind

if TYPE_CHECKING:
    from scheduler.alerts import Alert


class Purpose(StrEnum):
    """Why a reminder is in the queue (``Reminder.pending``)."""

    REMIND = "remind"  # its own message: the first send, or a retry of it
    AGAIN = "again"  # sent, then postponed by "Remind me tomorrow"
    NUDGE = "nudge"  # sent, not confirmed: the follow-up after 3 or 7 days


@dataclass(frozen=True, slots=True)
class Part:
    """One reminder inside a message."""

    reminder_id: int
    kind: Kind
    about: date | None
    local_date: date


@dataclass(frozen=True, slots=True)
class Delivery:
    """One Telegram message to a patient: reminders of one instant, in kind order."""

    patient_id: int
    chat_id: int
    locale: str
    cervix: bool  # the yearly reminder adds the cervical screening line
    due_at: datetime
    parts: tuple[Part, ...]
    snoozes: int = 0  # how often the patient has already postponed these reminders
    purpose: Purpose = Purpose.REMIND
    days_overdue: int = 0  # for a follow-up: days since the tests were due

    def with_parts(self, parts: Sequence[Part]) -> Delivery:
        """The same message with only ``parts`` (one page of a long bundle)."""
        return Delivery(
            self.patient_id,
            self.chat_id,
            self.locale,
            self.cervix,
            self.due_at,
            tuple(parts),
            self.snoozes,
            self.purpose,
            self.days_overdue,
        )


class Result(StrEnum):
    SENT = "sent"
    RATE_LIMITED = "rate_limited"  # 429: wait retry_after, then try again
    TRANSIENT = "transient"  # network error, 5xx: back off and retry
    TIMED_OUT = "timed_out"  # no answer in time: Telegram may have delivered it
    BLOCKED = "blocked"  # 403: the patient blocked the bot or deleted the account
    REJECTED = "rejected"  # any other 4xx: permanent


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    message_id: int | None = None
    error_code: int | None = None
    description: str | None = None
    retry_after: timedelta | None = None

    @classmethod
    def sent(cls, message_id: int) -> Outcome:
        return cls(Result.SENT, message_id=message_id)


class Sender(Protocol):
    """The Telegram side, as the dispatcher sees it. No method raises for Telegram's
    errors: each becomes an ``Outcome``."""

    def pages(self, delivery: Delivery) -> list[Delivery]:
        """``delivery`` as the messages it is sent as (one, unless it is too long to read
        on a phone); no I/O."""
        ...

    async def send(self, delivery: Delivery) -> Outcome:
        """Send one message: reminders, or the follow-up of ``Purpose.NUDGE``."""
        ...

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        """Send one coordinator alert to one recipient."""
        ...

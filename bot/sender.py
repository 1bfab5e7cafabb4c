"""The dispatcher's Sender on Telegram: renders reminders and maps errors to outcomes."""

from __future__ import annotations

import functools
from datetime import date, timedelta
from typing import Final

from telegram import Bot
from telegram.constants import ParseMode
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from bot import messages
from bot.i18n import Translator, translator
from bot.texts import KIND_TITLES
from scheduler.alerts import Alert, AlertKind
from scheduler.errors import N_
from scheduler.outbox import MAX_SNOOZES
from scheduler.protocol import TEST_KINDS, Kind
from scheduler.sending import Delivery, Outcome, Purpose, Result

# Button actions in callback data "r:<reminder id>:<snoozes so far>:<action>".
DONE, SNOOZE, SYMPTOMS, OK = "done", "snooze", "symptoms", "ok"
CALLBACK_PREFIX: Final = "r"

_ALERTS: Final = {
    # TRANSLATORS: alert to the care coordinator. %(label)s is the patient's pseudonym,
    # %(title)s the reminder, %(date)s its date.
    AlertKind.SYMPTOMS: N_(
        "Patient %(label)s reported symptoms (reminder: %(title)s, %(date)s). "
        "Please contact them today."
    ),
    # TRANSLATORS: alert to the care coordinator after 10 days without "Done".
    AlertKind.MISSED_TEST: N_("Patient %(label)s has not confirmed the tests due on %(date)s."),
    AlertKind.UNREACHABLE: N_(
        "Patient %(label)s cannot be reached: they blocked the bot or deleted their Telegram "
        "account. Their reminders are paused until they send /start again."
    ),
    AlertKind.DELIVERY_FAILED: N_(
        "A reminder for patient %(label)s (%(title)s, %(date)s) could not be delivered. "
        "See /deliveries %(label)s."
    ),
    AlertKind.COURSE_DUE: N_(
        "Patient %(label)s: the next treatment course is due around %(date)s."
    ),
    # TRANSLATORS: alert to the care coordinator; %(label)s is the patient's pseudonym.
    AlertKind.WITHDRAWN: N_("Patient %(label)s stopped the reminders (withdrew consent)."),
    # TRANSLATORS: alert to the care coordinator; %(label)s is the patient's former
    # pseudonym, now erased from the bot.
    AlertKind.ERASED: N_(
        "Patient %(label)s withdrew consent and asked for their data to be erased. "
        "The bot no longer stores their label, chat or course dates."
    ),
}


def callback_data(reminder_id: int, snoozes: int, action: str) -> str:
    return f"{CALLBACK_PREFIX}:{reminder_id}:{snoozes}:{action}"


# A reply markup as the Bot API reads it, JSON-ready.
Markup = dict[str, list[list[dict[str, str]]]]
# The buttons of a kind of message, (label, action) by row: the same for every message of
# that kind in one language, so made once.
_Layout = tuple[tuple[tuple[str, str], ...], ...]


@functools.lru_cache(maxsize=256)
def _reminder_layout(locale: str, tests: bool, snooze: bool, warning: bool) -> _Layout:
    tr = translator(locale)
    rows: list[list[tuple[str, str]]] = []
    if tests:
        rows.append([(tr.gettext(messages.DONE), DONE)])
        if snooze:
            rows[0].append((tr.gettext(messages.SNOOZE), SNOOZE))
    if warning:
        rows.append([(tr.gettext(messages.IM_OK), OK)])
    if rows:
        rows[-1].append((tr.gettext(messages.SYMPTOMS), SYMPTOMS))
    return tuple(tuple(row) for row in rows)


@functools.lru_cache(maxsize=64)
def _nudge_layout(locale: str) -> _Layout:
    tr = translator(locale)
    return (((tr.gettext(messages.DONE), DONE), (tr.gettext(messages.SYMPTOMS), SYMPTOMS)),)


def _markup(layout: _Layout, reminder_id: int, snoozes: int) -> Markup | None:
    if not layout:
        return None
    return {
        "inline_keyboard": [
            [
                {"text": label, "callback_data": callback_data(reminder_id, snoozes, action)}
                for label, action in row
            ]
            for row in layout
        ]
    }


@functools.lru_cache(maxsize=1024)
def _bundle_html(parts: tuple[tuple[Kind, date | None], ...], cervix: bool, locale: str) -> str:
    """``messages.bundle_html``, made once for the many patients whose message reads the
    same (the same reminders, dates and language)."""
    return messages.bundle_html(parts, cervix=cervix, tr=translator(locale))


def reminder_keyboard(delivery: Delivery, locale: str) -> Markup | None:
    """The buttons of what the message holds (PROTOCOL.md "Buttons on bundled messages"):
    Done / Remind me tomorrow / I have symptoms if it holds a test, I'm OK if it holds the
    post-infusion warning, nothing otherwise. A press names the message's first reminder;
    the server finds the rest of the message from it."""
    kinds = {part.kind for part in delivery.parts}
    layout = _reminder_layout(
        locale,
        tests=bool(kinds & TEST_KINDS),
        snooze=delivery.snoozes < MAX_SNOOZES,
        warning=Kind.POST_INFUSION_WARNING in kinds,
    )
    return _markup(layout, delivery.parts[0].reminder_id, delivery.snoozes)


def nudge_keyboard(delivery: Delivery, locale: str) -> Markup:
    """Done and I have symptoms, for every test the follow-up names."""
    markup = _markup(_nudge_layout(locale), delivery.parts[0].reminder_id, 0)
    assert markup is not None
    return markup


def alert_text(alert: Alert, tr: Translator) -> str:
    day = alert.about if alert.kind is AlertKind.COURSE_DUE and alert.about else alert.day
    return tr.gettext(_ALERTS[alert.kind]) % {
        "label": alert.label,
        "title": tr.gettext(KIND_TITLES[alert.reminder_kind]) if alert.reminder_kind else "",
        "date": tr.date(day) if day else "",
    }


class TelegramSender:
    """Sends reminders, follow-ups and coordinator alerts with a PTB ``Bot``; alerts are
    written in their recipient's language, else in ``alert_locale``."""

    def __init__(self, bot: Bot, *, alert_locale: str) -> None:
        self.bot = bot
        self.alert_locale = alert_locale

    def pages(self, delivery: Delivery) -> list[Delivery]:
        """The bundle as the messages it is sent as (``messages.pages``)."""
        if delivery.purpose is Purpose.NUDGE or len(delivery.parts) == 1:
            return [delivery]
        parts = delivery.parts
        split = messages.pages(
            [(part.kind, part.about) for part in parts],
            cervix=delivery.cervix,
            tr=translator(delivery.locale),
        )
        return [delivery.with_parts([parts[i] for i in page]) for page in split]

    async def send(self, delivery: Delivery) -> Outcome:
        tr = translator(delivery.locale)
        if delivery.purpose is Purpose.NUDGE:
            text = messages.nudge_text(
                [part.kind for part in delivery.parts],
                delivery.parts[0].local_date,
                delivery.days_overdue,
                tr,
            )
            return await self._send(delivery.chat_id, text, nudge_keyboard(delivery, tr.locale))
        text = _bundle_html(
            tuple((part.kind, part.about) for part in delivery.parts), delivery.cervix, tr.locale
        )
        return await self._send(
            delivery.chat_id,
            text,
            reminder_keyboard(delivery, tr.locale),
            parse_mode=ParseMode.HTML,
        )

    async def _send(
        self,
        chat_id: int,
        text: str,
        keyboard: Markup | None,
        *,
        parse_mode: str | None = None,
    ) -> Outcome:
        """Send, and turn Telegram's answer into an outcome (most specific error first).

        Through ``Bot._post``, as ``Bot.send_message`` does, but without ``send_message``'s
        reading of the answer into a ``Message`` (with its buttons, the sender's biggest
        cost): only the message id is needed. The request and its errors are PTB's.
        """
        parameters = {"chat_id": chat_id, "text": text, "reply_markup": keyboard}
        if parse_mode is not None:
            parameters["parse_mode"] = parse_mode
        try:
            message = await self.bot._post("sendMessage", parameters)
        except RetryAfter as error:
            wait = error.retry_after
            retry_after = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
            return Outcome(
                Result.RATE_LIMITED,
                error_code=429,
                description=error.message,
                retry_after=retry_after,
            )
        except Forbidden as error:
            return Outcome(Result.BLOCKED, error_code=403, description=error.message)
        except BadRequest as error:
            return Outcome(Result.REJECTED, error_code=400, description=error.message)
        except TimedOut:
            return Outcome(Result.TIMED_OUT, description="no answer in time")
        except NetworkError as error:
            return Outcome(Result.TRANSIENT, description=error.message)
        except TelegramError as error:
            return Outcome(Result.REJECTED, description=error.message)
        return Outcome.sent(message["message_id"])

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        tr = translator(locale or self.alert_locale)
        return await self._send(chat_id, alert_text(alert, tr), None)

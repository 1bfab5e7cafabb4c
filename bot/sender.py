"""The dispatcher's Sender on Telegram: renders reminders and maps errors to outcomes."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
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


def reminder_keyboard(delivery: Delivery, tr: Translator) -> InlineKeyboardMarkup | None:
    """The buttons of what the message holds (PROTOCOL.md "Buttons on bundled messages"):
    Done / Remind me tomorrow / I have symptoms if it holds a test, I'm OK if it holds the
    post-infusion warning, nothing otherwise. A press names the message's first reminder;
    the server finds the rest of the message from it."""
    kinds = {part.kind for part in delivery.parts}
    first = delivery.parts[0].reminder_id

    def button(label: str, action: str) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            tr.gettext(label), callback_data=callback_data(first, delivery.snoozes, action)
        )

    rows: list[list[InlineKeyboardButton]] = []
    if kinds & TEST_KINDS:
        rows.append([button(messages.DONE, DONE)])
        if delivery.snoozes < MAX_SNOOZES:
            rows[0].append(button(messages.SNOOZE, SNOOZE))
    if Kind.POST_INFUSION_WARNING in kinds:
        rows.append([button(messages.IM_OK, OK)])
    if not rows:
        return None
    rows[-1].append(button(messages.SYMPTOMS, SYMPTOMS))
    return InlineKeyboardMarkup(rows)


def nudge_keyboard(delivery: Delivery, tr: Translator) -> InlineKeyboardMarkup:
    """Done and I have symptoms, for every test the follow-up names."""
    first = delivery.parts[0].reminder_id
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(
                    tr.gettext(messages.DONE), callback_data=callback_data(first, 0, DONE)
                ),
                InlineKeyboardButton(
                    tr.gettext(messages.SYMPTOMS),
                    callback_data=callback_data(first, 0, SYMPTOMS),
                ),
            ]
        ]
    )


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
            return await self._send(delivery.chat_id, text, nudge_keyboard(delivery, tr))
        text = messages.bundle_html(
            [(part.kind, part.about) for part in delivery.parts], cervix=delivery.cervix, tr=tr
        )
        return await self._send(
            delivery.chat_id, text, reminder_keyboard(delivery, tr), parse_mode=ParseMode.HTML
        )

    async def _send(
        self,
        chat_id: int,
        text: str,
        keyboard: InlineKeyboardMarkup | None,
        *,
        parse_mode: str | None = None,
    ) -> Outcome:
        """Send, and turn Telegram's answer into an outcome (most specific error first)."""
        try:
            message = await self.bot.send_message(
                chat_id, text, reply_markup=keyboard, parse_mode=parse_mode
            )
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
        return Outcome.sent(message.message_id)

    async def alert(self, alert: Alert, chat_id: int, locale: str | None = None) -> Outcome:
        tr = translator(locale or self.alert_locale)
        return await self._send(chat_id, alert_text(alert, tr), None)

"""Small helpers shared by the handlers."""

from __future__ import annotations

import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from telegram import Update, User
from telegram.error import TelegramError
from telegram.ext import BaseHandler, filters

from bot import timezones
from bot.context import BotContext
from bot.i18n import Translator, negotiate, translator
from bot.sender import alert_text
from scheduler import alerts, store, teams
from scheduler.alerts import Alert, AlertKind, Route
from scheduler.db import reading
from scheduler.patient_data import Erased

log = logging.getLogger(__name__)

# Commands work in private chats only; alerts may go to a group, commands never do.
PRIVATE = filters.ChatType.PRIVATE

# A command followed by an argument ("/forget MS-001"), to tell it from the bare command.
WITH_ARGUMENT = filters.Regex(r"^/\w+(@\w+)?\s+\S")

Handlers = list[BaseHandler[Update, BotContext, object]]


def user_translator(user: User | None, context: BotContext) -> Translator:
    """Texts for someone who is not (yet) a patient: their Telegram language if shipped."""
    default = context.settings.default_locale
    return translator(negotiate(user.language_code if user else None, default=default))


def when(moment: datetime, zone: str, tr: Translator) -> str:
    """A moment in ``zone``, naming the zone: "February 5, 2026, 9:00 AM (Berlin)"."""
    local = moment.astimezone(ZoneInfo(zone))
    # TRANSLATORS: a date and local time, e.g. "February 5, 2026, 9:00 AM".
    text = tr.gettext("%(date)s, %(time)s") % {
        "date": tr.date(local.date()),
        "time": tr.time(local.time()),
    }
    return f"{text} ({timezones.city(zone, tr.locale)})"


async def viewer_zone(context: BotContext, user: User | None) -> str:
    """The zone a coordinator or staff member reads times in: their own (``/timezone``),
    else the bot's default."""
    if user is not None:
        async with reading(context.sessions) as session:
            zone = await store.staff_timezone(session, user_id=user.id)
        if zone is not None:
            return zone
    return context.settings.default_timezone


async def reply(update: Update, text: str, **kwargs: object) -> None:
    """Answer in the chat the update came from."""
    chat = update.effective_chat
    if chat is not None:
        await chat.send_message(text, **kwargs)  # type: ignore[arg-type]


async def send_alerts_now(context: BotContext, patient_id: int) -> None:
    """Send the coordinator alerts just queued about ``patient_id`` at once rather than at
    the next tick (only theirs: a backlog of others would hold up this answer). They are
    stored already: should this fail, the dispatcher's tick sends them."""
    try:
        await context.dispatcher.send_alerts(patient_id=patient_id)
    except Exception as error:  # the queued alerts are safe; the user's answer went out
        log.warning("alerts left to the next dispatcher tick: %s", type(error).__name__)


async def tell_team_of_erasure(context: BotContext, erased: Erased) -> bool:
    """Tell the care team that a patient had their data erased, naming the label they
    chose, so they can update the clinic's own records; returns whether anyone was told.

    Sent at once, to the recipients a queued alert would have (``alerts.recipients``, the
    team when the own coordinator cannot be reached): the label is no longer in the
    database, so it cannot wait in the queue. A failure is logged and does not undo it.
    """
    alert = Alert(AlertKind.ERASED, 0, erased.label, erased.coordinator_id, erased.team_id)
    async with reading(context.sessions) as session:
        own = await teams.own_coordinator(
            session, team_id=erased.team_id, coordinator_id=erased.coordinator_id
        )
        team = await teams.coordinators(session, team_id=erased.team_id)
        languages = await teams.locales(session, user_ids=team + ([own] if own else []))
    chats = alerts.recipients(
        own=own, team=[] if own else team, alert_chat_id=context.dispatcher.alert_chat_id
    )
    told = False
    for chat_id, route in chats:
        sent = await _tell(context, chat_id, alert, languages.get(chat_id))
        told = told or sent
        if not sent and route is Route.OWN:
            for other, _ in alerts.fallback(failed=chat_id, team=team):
                told = await _tell(context, other, alert, languages.get(other)) or told
    if not told:
        log.error("erasure alert: nobody could be told")
    return told


async def _tell(context: BotContext, chat_id: int, alert: Alert, locale: str | None) -> bool:
    tr = translator(locale or context.settings.default_locale)
    try:
        await context.bot.send_message(chat_id=chat_id, text=alert_text(alert, tr))
    except TelegramError as error:
        log.warning("could not send the erasure alert: %s", type(error).__name__)
        return False
    return True

"""The buttons under reminder messages: Done, Remind me tomorrow, I have symptoms, I'm OK."""

from __future__ import annotations

import re

from telegram import Update
from telegram.ext import CallbackQueryHandler

from bot import messages
from bot.context import BotContext
from bot.handlers.common import Handlers, reply, send_alerts_now, user_translator
from bot.i18n import translator
from bot.sender import CALLBACK_PREFIX
from scheduler import store
from scheduler.alerts import AlertKind
from scheduler.db import reading
from scheduler.outbox import Action, Answer, acknowledge, alert_reached

_DATA = re.compile(rf"{CALLBACK_PREFIX}:(\d{{1,18}}):(\d):(done|ok|snooze|symptoms)", re.ASCII)


async def reminder_button(update: Update, context: BotContext) -> None:
    """Record the patient's answer to a reminder, once, after checking the reminder is theirs."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None or query.data is None:
        return
    match = _DATA.fullmatch(query.data)
    action = Action(match[3]) if match else None
    chat = update.effective_chat
    now = context.clock.now()
    if match is None or action is None or chat is None or chat.id != user.id:
        answered = None
    else:
        async with context.sessions.begin() as session:
            # A symptoms alert is queued with the answer: it reaches the coordinator even
            # if Telegram fails right now (the dispatcher retries it).
            answered = await acknowledge(
                session,
                reminder_id=int(match[1]),
                chat_id=user.id,
                action=action,
                snoozes_seen=int(match[2]),
                now=now,
                alert_chat_id=context.dispatcher.alert_chat_id,
            )
            if answered.answer is Answer.NOT_YOURS:
                store.audit(
                    session,
                    actor=f"user:{user.id}",
                    action="callback.refused",
                    target=f"reminder:{match[1]}",
                    now=now,
                )
    if answered is None or answered.answer is Answer.NOT_YOURS or answered.patient is None:
        tr = user_translator(user, context)
        await query.answer(tr.gettext("This button is not available."), show_alert=True)
        return
    tr = translator(answered.patient.locale)
    await query.answer()
    if answered.answer is Answer.ALREADY:
        await reply(update, messages.already_recorded_text(tr))
        return
    if answered.answer is Answer.SNOOZE_LIMIT:
        await reply(update, messages.snooze_limit_text(tr))
        return
    if action is Action.SYMPTOMS:
        # The urgent help first; "we have told your team" only once someone was told. The
        # buttons go: the answer is recorded for the whole message.
        await reply(update, messages.symptoms_text(tr))
        if query.message is not None:
            await query.edit_message_reply_markup(reply_markup=None)
        await send_alerts_now(context, answered.patient.id)
        async with reading(context.sessions) as session:
            told = await alert_reached(
                session, patient_id=answered.patient.id, kind=AlertKind.SYMPTOMS, since=now
            )
        await reply(update, messages.symptoms_reported_text(tr, told=told))
        return
    if query.message is not None:
        await query.edit_message_reply_markup(reply_markup=None)
    if action is Action.SNOOZE:
        await reply(update, messages.snoozed_text(tr))
    else:
        await reply(update, messages.acknowledged_text(tr))


def handlers() -> Handlers:
    """The buttons of reminder messages."""
    return [CallbackQueryHandler(reminder_button, pattern=rf"^{CALLBACK_PREFIX}:")]

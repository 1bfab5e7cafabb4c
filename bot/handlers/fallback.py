"""The answer to everything no other handler takes: free text, stickers, unknown commands.

Nobody reads what people write to the bot, and they must learn that at once, with whom to
contact and the emergency line. A patient (also one who withdrew) gets that; a coordinator,
staff member or admin their own /help; anyone else what the bot is for. One answer per chat
every ``ANSWER_EVERY``, so a chatty user is not flooded (kept in the chat's data: after a
restart, or on another replica, one more answer may come).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from telegram import Update
from telegram.ext import MessageHandler, filters

from bot import messages
from bot.auth import role_of
from bot.context import BotContext
from bot.handlers.common import Handlers, reply, user_translator
from bot.handlers.patient import invite_only, patient_of_chat, staff_help
from bot.i18n import translator
from scheduler.db import reading

ANSWER_EVERY: Final = timedelta(minutes=10)
_ANSWERED = "answered_at"


async def anything_else(update: Update, context: BotContext) -> None:
    """Answer once in a while; never take the message for anything."""
    if context.chat_data is None:
        return
    now = context.clock.now()
    last = context.chat_data.get(_ANSWERED)
    if isinstance(last, datetime) and now - last < ANSWER_EVERY:
        return
    context.chat_data[_ANSWERED] = now
    role = await role_of(update, context)
    if role is not None:
        await reply(update, staff_help(role, user_translator(update.effective_user, context)))
        return
    async with reading(context.sessions) as session:
        patient = await patient_of_chat(session, update)
    if patient is None:
        await reply(update, invite_only(user_translator(update.effective_user, context)))
        return
    contact = context.settings.clinic_contact
    await reply(update, messages.not_read_text(translator(patient.locale), contact=contact))


def handlers() -> Handlers:
    """Registered after every other handler: it takes only what they left."""
    return [MessageHandler(filters.ChatType.PRIVATE & filters.UpdateType.MESSAGE, anything_else)]

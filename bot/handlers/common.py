"""Small helpers shared by the handlers."""

from __future__ import annotations

import logging

from telegram import Update, User
from telegram.ext import BaseHandler, filters

from bot.context import BotContext
from bot.i18n import Translator, negotiate, translator

log = logging.getLogger(__name__)

# Commands work in private chats only; alerts may go to a group, commands never do.
PRIVATE = filters.ChatType.PRIVATE

Handlers = list[BaseHandler[Update, BotContext, object]]


def user_translator(user: User | None, context: BotContext) -> Translator:
    """Texts for someone who is not (yet) a patient: their Telegram language if shipped."""
    default = context.settings.default_locale
    return translator(negotiate(user.language_code if user else None, default=default))


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

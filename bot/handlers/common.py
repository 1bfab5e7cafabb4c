"""Small helpers shared by the handlers."""

from __future__ import annotations

from telegram import Update, User
from telegram.ext import BaseHandler, filters

from bot.context import BotContext
from bot.i18n import Translator, negotiate, translator

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

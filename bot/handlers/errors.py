"""The last resort: anything a handler did not expect."""

from __future__ import annotations

import logging
import traceback

from telegram import Update
from telegram.error import BadRequest, NetworkError, TelegramError

from bot.context import BotContext
from bot.handlers.common import reply, user_translator
from scheduler.db import is_database_error

log = logging.getLogger(__name__)


def _where(error: BaseException) -> str:
    """Where the error happened, innermost first. The error's own message is left out:
    it may quote what a user typed or a database value."""
    frames = traceback.extract_tb(error.__traceback__)[-5:]
    return " < ".join(
        f"{frame.name} ({frame.filename}:{frame.lineno})" for frame in reversed(frames)
    )


def _outage(error: BaseException | None) -> str | None:
    """What is away, if the error is an outage rather than a bug: Telegram or the database.
    Both come back; what failed is retried (queued messages) or asked again by the user."""
    if isinstance(error, NetworkError) and not isinstance(error, BadRequest):
        return "Telegram"
    if error is not None and is_database_error(error):
        return "the database"
    return None


async def on_error(update: object, context: BotContext) -> None:
    """Log the error without personal data and tell the user, once, that something failed."""
    error = context.error
    if isinstance(update, Update):
        kind = "button" if update.callback_query else "message" if update.message else "other"
        handled = f"update {update.update_id} ({kind})"
    else:
        handled = "a job"
    away = _outage(error)
    if away is not None:
        log.warning(
            "%s could not be reached while handling %s (%s)", away, handled, type(error).__name__
        )
        if away == "Telegram":
            return  # an answer could not get through either
    else:
        log.error(
            "unhandled %s while handling %s at %s",
            type(error).__name__,
            handled,
            _where(error) if error else "?",
        )
    if isinstance(update, Update) and update.effective_chat is not None:
        tr = user_translator(update.effective_user, context)
        try:
            await reply(update, tr.gettext("Sorry, something went wrong. Please try again later."))
        except TelegramError as failed:
            log.warning("could not tell the user either (%s)", type(failed).__name__)

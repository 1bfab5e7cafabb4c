"""Conversations of several steps, for the handlers: what ``scheduler.dialogues`` keeps,
read and written for the chat and user of an update.

PTB's ConversationHandler keeps its state in process memory (and, persisted, reads it back
only at start-up), so a restart, or an update that reaches another replica, loses the
user's place. Here a command that asks something keeps a conversation row; a typed answer
goes to the conversation under way (``router``, ahead of every other handler), a button
press to its handler, which reads the row itself; the row ends when the conversation does.
Nothing of a conversation lives in ``user_data``.

The conversations, by name: a consent after an invite, /enroll, a /course override, /time,
/timezone, /language, the /stop and /forget confirmations, a coordinator's /forget LABEL,
the /deliveries listing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from telegram import Update
from telegram.error import TelegramError
from telegram.ext import (
    ApplicationHandlerStop,
    BaseHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot.context import BotContext
from scheduler import dialogues
from scheduler.db import reading
from scheduler.dialogues import Open

log = logging.getLogger(__name__)

CONSENT: Final = "consent"
ENROL: Final = "enroll"
COURSE: Final = "course"
TIME: Final = "time"
TIMEZONE: Final = "timezone"
LANGUAGE: Final = "language"
STOP: Final = "stop"
FORGET: Final = "forget"
ERASE: Final = "erase"
LISTING: Final = "deliveries"

# How long a question or a confirmation waits for its answer.
CONFIRMATION_LASTS: Final = timedelta(minutes=10)

TextAnswer = Callable[[Update, BotContext, Open], Awaitable[Any]]
Notice = Callable[[BotContext, Open], Awaitable[None]]
PRIVATE = filters.ChatType.PRIVATE


@dataclass(frozen=True)
class Conversations:
    """What a handler module's conversations do outside their own commands and buttons,
    by conversation name: take a typed answer, be cancelled (/cancel), be told they ran
    out of time."""

    answers: Mapping[str, TextAnswer] = field(default_factory=dict)
    cancels: Mapping[str, TextAnswer] = field(default_factory=dict)
    notices: Mapping[str, Notice] = field(default_factory=dict)

    def __or__(self, other: Conversations) -> Conversations:
        return Conversations(
            {**self.answers, **other.answers},
            {**self.cancels, **other.cancels},
            {**self.notices, **other.notices},
        )


def _key(update: Update) -> tuple[int, int] | None:
    chat, user = update.effective_chat, update.effective_user
    return (chat.id, user.id) if chat is not None and user is not None else None


async def find(update: Update, context: BotContext, name: str) -> Open | None:
    """The conversation ``name`` of this chat and user, if under way."""
    return next((open_ for open_ in await _under_way(update, context) if open_.name == name), None)


async def keep(
    update: Update,
    context: BotContext,
    name: str,
    *,
    step: str = "",
    data: Mapping[str, Any] | None = None,
    lasts: timedelta = CONFIRMATION_LASTS,
    patient_id: int | None = None,
) -> None:
    """Start the conversation ``name`` for this chat and user, or move it to ``step``."""
    key = _key(update)
    if key is None:
        return
    async with context.sessions.begin() as session:
        await dialogues.keep(
            session,
            chat_id=key[0],
            user_id=key[1],
            name=name,
            step=step,
            data=dict(data or {}),
            now=context.clock.now(),
            lasts=lasts,
            patient_id=patient_id,
        )


async def end(update: Update, context: BotContext, name: str) -> bool:
    """End the conversation ``name``; False if none was under way."""
    key = _key(update)
    if key is None:
        return False
    async with context.sessions.begin() as session:
        return await dialogues.end(session, chat_id=key[0], user_id=key[1], name=name)


async def take(update: Update, context: BotContext, name: str) -> Open | None:
    """End the conversation ``name`` and return it if it was under way: for a confirmation,
    which two presses, on one replica or two, cannot both act on."""
    key = _key(update)
    if key is None:
        return None
    async with context.sessions.begin() as session:
        return await dialogues.take(
            session, chat_id=key[0], user_id=key[1], name=name, now=context.clock.now()
        )


def handlers(
    conversations: Conversations,
    *,
    nothing_to_cancel: Callable[[Update, BotContext], Awaitable[None]],
) -> list[BaseHandler[Update, BotContext, None]]:
    """For the group before every other: a typed message in a private chat goes to the
    latest conversation under way that takes typed answers, and to nothing else (without
    one it goes on to the other handlers: the free-text answer); /cancel ends the latest
    conversation that can be cancelled, or says there is nothing to cancel."""

    async def route(update: Update, context: BotContext) -> None:
        for open_ in await _under_way(update, context):
            answer = conversations.answers.get(open_.name)
            if answer is not None:
                await answer(update, context, open_)
                raise ApplicationHandlerStop

    async def cancel(update: Update, context: BotContext) -> None:
        for open_ in await _under_way(update, context):
            cancelled = conversations.cancels.get(open_.name)
            if cancelled is not None and await end(update, context, open_.name):
                await cancelled(update, context, open_)
                raise ApplicationHandlerStop
        await nothing_to_cancel(update, context)
        raise ApplicationHandlerStop

    return [
        MessageHandler(PRIVATE & filters.TEXT & ~filters.COMMAND, route),
        CommandHandler("cancel", cancel, filters=PRIVATE),
    ]


async def _under_way(update: Update, context: BotContext) -> list[Open]:
    key = _key(update)
    if key is None:
        return []
    async with reading(context.sessions) as session:
        return await dialogues.under_way(
            session, chat_id=key[0], user_id=key[1], now=context.clock.now()
        )


async def expire(context: BotContext, notices: Mapping[str, Notice]) -> int:
    """End the conversations whose time ran out; those named in ``notices`` get theirs (an
    abandoned enrolment says that nothing was saved). Returns how many ended."""
    async with context.sessions.begin() as session:
        ended = await dialogues.expire(session, now=context.clock.now())
    for open_ in ended:
        notice = notices.get(open_.name)
        if notice is None:
            continue
        try:
            await notice(context, open_)
        except TelegramError as error:  # blocked meanwhile, or Telegram away: no retry
            log.warning("notice of an ended %s not sent: %s", open_.name, type(error).__name__)
    return len(ended)

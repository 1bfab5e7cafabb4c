"""Who may run which command. Checked on every update, against the database."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram import Update
from telegram.ext import ConversationHandler

from bot.context import BotContext
from bot.handlers.common import reply, user_translator
from bot.i18n import negotiate
from scheduler import store
from scheduler.statuses import Role

# A role may do what the roles after it may do.
RANKS = {Role.STAFF: 1, Role.COORDINATOR: 2, Role.ADMIN: 3}

Handler = Callable[[Update, BotContext], Awaitable[Any]]
H = TypeVar("H", bound=Handler)


def allows(role: Role | None, needed: Role) -> bool:
    return role is not None and RANKS[role] >= RANKS[needed]


async def role_of(update: Update, context: BotContext) -> Role | None:
    user = update.effective_user
    if user is None:
        return None
    async with context.sessions() as session:
        return await store.role_of(session, user_id=user.id)


async def _learn_language(update: Update, context: BotContext) -> None:
    """Remember a staff member's Telegram language (when shipped): their alerts are
    written in it."""
    user = update.effective_user
    if user is None or user.language_code is None:
        return
    locale = negotiate(user.language_code, default="")
    if locale:
        async with context.sessions.begin() as session:
            await store.note_language(session, user_id=user.id, locale=locale)


def requires(needed: Role) -> Callable[[H], H]:
    """Run the handler only for users with ``needed`` or a higher role.

    Anyone else gets one neutral reply that does not say whether the command, a label or
    a patient exists, and the attempt is audited.
    """

    def decorator(handler: H) -> H:
        @functools.wraps(handler)
        async def guarded(update: Update, context: BotContext) -> Any:
            if allows(await role_of(update, context), needed):
                await _learn_language(update, context)
                return await handler(update, context)
            user = update.effective_user
            async with context.sessions.begin() as session:
                store.audit(
                    session,
                    actor=f"user:{user.id}" if user else "unknown",
                    action="access.denied",
                    target=handler.__name__,
                    now=context.clock.now(),
                )
            if update.callback_query is not None:
                await update.callback_query.answer()
            tr = user_translator(user, context)
            await reply(update, tr.gettext("This command is not available."))
            return ConversationHandler.END

        return guarded  # type: ignore[return-value]

    return decorator

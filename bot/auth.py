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


def _language(update: Update) -> str | None:
    """The shipped locale of the user's Telegram language, if any."""
    user = update.effective_user
    if user is None or not user.language_code:
        return None
    return negotiate(user.language_code, default="") or None


def requires(needed: Role) -> Callable[[H], H]:
    """Run the handler only for users with ``needed`` or a higher role.

    Anyone else gets one neutral reply that does not say whether the command, a label or
    a patient exists, and the attempt is audited.
    """

    def decorator(handler: H) -> H:
        @functools.wraps(handler)
        async def guarded(update: Update, context: BotContext, *args: Any) -> Any:
            user = update.effective_user
            staff = None
            if user is not None:
                async with context.sessions() as session:
                    staff = await store.staff_member(session, user_id=user.id)
            if user is not None and staff is not None and allows(staff[0], needed):
                # Their alerts are written in their Telegram language: written down only
                # when it changed, not on every command.
                language = _language(update)
                if language and language != staff[1]:
                    async with context.sessions.begin() as session:
                        await store.note_language(session, user_id=user.id, locale=language)
                return await handler(update, context, *args)
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

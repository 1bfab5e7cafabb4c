"""What every handler can reach: the database, the settings and the clock."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram.ext import Application, CallbackContext, ExtBot

from bot.settings import Settings
from scheduler.clock import Clock
from scheduler.dispatcher import Dispatcher

if TYPE_CHECKING:
    from bot.dialogues import Conversations
    from bot.menus import MenuSync


@dataclass
class Services:
    """Shared, long-lived objects, stored as the application's ``bot_data``."""

    settings: Settings | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    clock: Clock | None = None
    dispatcher: Dispatcher | None = None
    menus: MenuSync | None = None
    conversations: Conversations | None = None


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], Services]):
    """The callback context of remindbot's handlers, with typed access to the services."""

    @property
    def services(self) -> Services:
        return self.bot_data

    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        assert self.bot_data.sessions is not None
        return self.bot_data.sessions

    @property
    def settings(self) -> Settings:
        assert self.bot_data.settings is not None
        return self.bot_data.settings

    @property
    def clock(self) -> Clock:
        assert self.bot_data.clock is not None
        return self.bot_data.clock

    @property
    def dispatcher(self) -> Dispatcher:
        assert self.bot_data.dispatcher is not None
        return self.bot_data.dispatcher

    @property
    def menus(self) -> MenuSync:
        assert self.bot_data.menus is not None
        return self.bot_data.menus


RemindbotApp = Application[ExtBot[None], BotContext, dict[Any, Any], dict[Any, Any], Services, Any]

"""The Telegram application: one function builds it and registers every handler."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Update
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from bot.context import BotContext, RemindbotApp, Services
from bot.handlers import coordinator, patient, staff
from bot.handlers.errors import on_error
from bot.settings import Settings
from scheduler import store
from scheduler.clock import Clock
from scheduler.db import create_engine, is_migrated, is_sqlite, migrate, session_factory

log = logging.getLogger(__name__)


class DatabaseNotMigrated(RuntimeError):
    def __init__(self) -> None:
        super().__init__("The database is not at the current schema: run remindbot migrate.")


def register_handlers(app: RemindbotApp) -> None:
    """Every command and button of the bot: each handler module lists its own."""
    for module in (patient, coordinator, staff):
        app.add_handlers(module.handlers())
    app.add_error_handler(on_error)


def build_application(*, settings: Settings, engine: AsyncEngine, clock: Clock) -> RemindbotApp:
    """The bot, talking to ``settings.telegram_api_base_url`` and storing in ``engine``."""
    app: RemindbotApp = (
        ApplicationBuilder()
        .token(settings.token())
        .base_url(settings.telegram_api_base_url)
        .context_types(ContextTypes(context=BotContext, bot_data=Services))
        .build()
    )
    app.bot_data.settings = settings
    app.bot_data.sessions = session_factory(engine)
    app.bot_data.clock = clock
    register_handlers(app)
    return app


async def prepare_database(engine: AsyncEngine, settings: Settings, clock: Clock) -> None:
    """Bring a SQLite file to the current schema (PostgreSQL must be migrated explicitly)
    and make the configured admins admins."""
    if is_sqlite(engine):
        await migrate(engine)
    elif not await is_migrated(engine):
        raise DatabaseNotMigrated()
    async with session_factory(engine).begin() as session:
        await store.bootstrap_admins(session, user_ids=settings.admin_ids, now=clock.now())


def run_polling(settings: Settings, clock: Clock) -> None:
    """Run the bot with long polling until SIGINT or SIGTERM.

    Only one process may poll one bot token; Telegram answers a second one with a conflict.
    """
    engine = create_engine(settings.database_url)
    app = build_application(settings=settings, engine=engine, clock=clock)

    async def startup(_: Application) -> None:  # type: ignore[type-arg]
        await prepare_database(engine, settings, clock)
        log.info("remindbot started as @%s, polling", app.bot.username)

    async def shutdown(_: Application) -> None:  # type: ignore[type-arg]
        await engine.dispose()

    app.post_init = startup
    app.post_shutdown = shutdown
    app.run_polling(allowed_updates=Update.ALL_TYPES)

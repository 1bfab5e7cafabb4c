"""What the commands share: settings, the database, Telegram, files, errors and exit codes.

The heavy libraries are imported inside the functions that need them (see ``bot.cli``).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bot.i18n import gettext as _

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
    from telegram import Bot

    from bot.settings import Settings
    from scheduler import teams

UNREACHABLE = 1
USAGE_ERROR = 2
CLI_ACTOR = "cli"
SQLITE_WORKER_WAIT = 2.0  # seconds
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Unreachable(click.ClickException):
    """The database or Telegram could not be reached (exit code 1); nothing was changed."""

    exit_code = UNREACHABLE


def settings() -> Settings:
    """The settings from the environment; a bad one is a usage error naming its variable."""
    from bot.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; its SQLite worker threads end before the loop closes."""
    import asyncio

    async def settled() -> T:
        try:
            return await coroutine
        finally:
            await _sqlite_workers_done()

    return asyncio.run(settled())


async def _sqlite_workers_done() -> None:
    """Wait for aiosqlite's worker threads while the event loop still runs.

    When a connection fails to open, aiosqlite queues its clean-up on the worker thread
    without waiting for it (omnilib/aiosqlite#241); if the loop closes first, the thread
    dies with "Event loop is closed" and prints a traceback after the command's own line.
    Every engine is disposed by now, so the threads are ending, not idle.
    """
    import asyncio
    import threading

    for thread in threading.enumerate():
        if "_connection_worker_thread" in thread.name:
            await asyncio.to_thread(thread.join, SQLITE_WORKER_WAIT)


def now() -> datetime:
    from scheduler.clock import SystemClock

    return SystemClock().now()


def database_problem(error: BaseException, url: str) -> str:
    """One line saying why the database at ``url`` could not be used, with what to check."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from scheduler.db import database_label

    reason = str(error.orig if isinstance(error, DBAPIError) and error.orig else error)
    reason = reason.splitlines()[0] if reason.strip() else type(error).__name__
    parsed = make_url(url)
    if parsed.drivername.startswith("sqlite"):
        hint = _("check that the folder of %(path)s exists and that remindbot may write there") % {
            "path": parsed.database
        }
    else:
        hint = _("check DATABASE_URL and that the database server is running")
    return _("database %(url)s: %(reason)s (%(hint)s)") % {
        "url": database_label(url),
        "reason": reason,
        "hint": hint,
    }


def sqlite_folder_problem(url: str) -> str | None:
    """Why a SQLite file at ``url`` cannot be created, if its folder is missing: DATABASE_URL
    is then wrong (a usage error), and SQLite is not even asked."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    folder = Path(parsed.database).parent
    if folder.is_dir():
        return None
    return _("DATABASE_URL: the folder %(folder)s of the SQLite file does not exist.") % {
        "folder": folder
    }


def is_database_error(error: BaseException) -> bool:
    """``scheduler.db.is_database_error``, imported when needed."""
    from scheduler.db import is_database_error

    return is_database_error(error)


@asynccontextmanager
async def database(config: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the configured database, which must be at the current schema.

    A SQLite file is brought up to date on the spot; a PostgreSQL database shared by
    several processes is upgraded only by an explicit ``remindbot migrate``. A database
    that cannot be reached ends the command with exit code 1 and one line.
    """
    from sqlalchemy.ext.asyncio import async_sessionmaker

    from scheduler.db import (
        create_engine,
        database_label,
        is_migrated,
        is_sqlite,
        migrate,
    )

    problem = sqlite_folder_problem(config.database_url)
    if problem:
        raise click.UsageError(problem)
    engine = create_engine(config.database_url)
    try:
        try:
            if is_sqlite(engine):
                await migrate(engine)
            elif not await is_migrated(engine):
                raise click.UsageError(
                    _("The database %(url)s is not at the current schema: run remindbot migrate.")
                    % {"url": database_label(config.database_url)}
                )
            yield async_sessionmaker(engine, expire_on_commit=False)
        except Exception as error:
            if is_database_error(error):
                raise Unreachable(database_problem(error, config.database_url)) from None
            raise
    finally:
        await engine.dispose()


def telegram(config: Settings) -> Bot:
    """A Bot for one-off calls, through the project's request class."""
    from telegram import Bot

    from bot.request import AiohttpRequest

    return Bot(
        config.token(),
        base_url=config.telegram_api_base_url,
        request=AiohttpRequest(),
        get_updates_request=AiohttpRequest(connection_pool_size=1),
    )


async def bot_username(config: Settings) -> str:
    """The bot's @username for invite links: from the settings, else asked of Telegram."""
    from telegram.error import InvalidToken, TelegramError

    if config.bot_username:
        return config.bot_username
    if config.telegram_bot_token is None:
        raise click.UsageError(
            _("Set REMINDBOT_BOT_USERNAME or TELEGRAM_BOT_TOKEN so invite links can name the bot.")
        )
    try:
        async with telegram(config) as bot:
            return bot.username
    except InvalidToken:
        raise click.UsageError(_("TELEGRAM_BOT_TOKEN was rejected by Telegram.")) from None
    except TelegramError as error:
        raise Unreachable(
            _(
                "Could not ask Telegram for the bot's username (%(error)s); "
                "set REMINDBOT_BOT_USERNAME."
            )
            % {"error": error.message}
        ) from None


def new_file(path: Path, *, option: str, replace: bool = False) -> Path:
    """``path`` for a file this command will write: its folder must exist and be writable,
    and the file must not exist unless ``replace``.

    Checked before anything is stored, so a bad path is a usage error, not a half-done job.
    """
    if path.is_dir() or (path.exists() and not replace):
        raise click.BadParameter(
            _("%(path)s already exists; choose another file.") % {"path": path},
            param_hint=option,
        )
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(
            _("the folder %(folder)s does not exist.") % {"folder": folder}, param_hint=option
        )
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(
            _("the folder %(folder)s is not writable.") % {"folder": folder}, param_hint=option
        )
    return path


def write_private(path: Path, data: bytes, *, replace: bool = False) -> None:
    """Create ``path`` readable by its owner only (0600), whatever the umask: invite links
    and backups let whoever reads them enrol as a patient or see one.

    With ``replace`` an existing file is swapped for the new one in one step.
    """
    target = path.with_name(f".{path.name}.{os.getpid()}.tmp") if replace else path
    descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    if replace:
        os.replace(target, path)


def label_argument(function: F) -> F:
    """The LABEL argument of the commands that act on one patient."""
    return click.argument("label", metavar="LABEL")(function)


def team_option(help_text: str) -> Callable[[F], F]:
    """``--team NAME``: a care team by name."""
    return click.option("--team", metavar="NAME", help=help_text)


async def team_scope(session: AsyncSession, name: str | None) -> teams.Scope:
    """Every team, or only the one named (a usage error if there is none)."""
    from scheduler import teams

    if name is None:
        return teams.EVERY_TEAM
    try:
        found = await teams.by_name(session, name=name)
    except teams.UnknownTeam as error:
        raise click.UsageError(error.render(_)) from None
    return teams.Scope(frozenset({found.id}))

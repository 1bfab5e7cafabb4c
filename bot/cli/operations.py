"""The operator's commands: migrate, doctor, export and run."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli import common
from bot.i18n import gettext as _
from bot.i18n import ngettext

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from bot.settings import Settings


@click.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the current schema (safe to run again)."""
    from scheduler.db import create_engine, database_label, migrate

    config = common.settings()
    problem = common.sqlite_folder_problem(config.database_url)
    if problem:
        raise click.UsageError(problem)

    async def upgrade() -> None:
        engine = create_engine(config.database_url)
        try:
            await migrate(engine)
        except Exception as error:
            if common.is_database_error(error):
                raise common.Unreachable(
                    common.database_problem(error, config.database_url)
                ) from None
            raise
        finally:
            await engine.dispose()

    common.run(upgrade())
    click.echo(_("Database %(url)s is up to date.") % {"url": database_label(config.database_url)})


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


async def _database_checks(config: Settings) -> list[Check]:
    from sqlalchemy import text

    from scheduler.db import create_engine, database_label, is_migrated

    problem = common.sqlite_folder_problem(config.database_url)
    if problem:
        return [Check(_("database"), False, problem)]
    engine = create_engine(config.database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks = [Check(_("database"), True, database_label(config.database_url))]
        if await is_migrated(engine):
            checks.append(Check(_("migrations"), True, _("at the current schema")))
            checks += await _alert_checks(engine)
        else:
            checks.append(
                Check(
                    _("migrations"),
                    False,
                    _("behind the current schema"),
                    _("run remindbot migrate"),
                )
            )
        return checks
    except Exception as error:
        if not common.is_database_error(error):
            raise
        return [Check(_("database"), False, common.database_problem(error, config.database_url))]
    finally:
        await engine.dispose()


async def _alert_checks(engine: AsyncEngine) -> list[Check]:
    """Every patient's team can be told of alerts, and no alert found nobody."""
    from scheduler import outbox, teams
    from scheduler.db import reading, session_factory

    async with reading(session_factory(engine)) as session:
        unrouted = await outbox.unrouted_alerts(session)
        summaries = await teams.summaries(session)
    orphaned = [team.name for team in summaries if team.patients and not team.coordinators]
    return [
        Check(
            _("care teams"),
            not orphaned,
            _("teams without a coordinator: %(teams)s") % {"teams": ", ".join(orphaned)}
            if orphaned
            else ngettext("%(count)d team", "%(count)d teams", len(summaries))
            % {"count": len(summaries)},
            _("assign one: remindbot team assign TEAM USER_ID") if orphaned else "",
        ),
        Check(
            _("alerts"),
            not unrouted,
            ngettext(
                "%(count)d alert found nobody to tell",
                "%(count)d alerts found nobody to tell",
                unrouted,
            )
            % {"count": unrouted}
            if unrouted
            else _("every alert had a recipient"),
            _("see remindbot team list; set REMINDBOT_ALERT_CHAT_ID") if unrouted else "",
        ),
    ]


def _translation_check() -> Check:
    from bot.i18n import available_locales, catalog_problems

    problems = catalog_problems()
    return Check(
        _("translations"),
        not problems,
        "; ".join(problems) or _("%(count)d languages") % {"count": len(available_locales())},
        _("reinstall remindbot: its locales/ files are missing or damaged") if problems else "",
    )


async def _telegram_checks(config: Settings) -> list[Check]:
    from telegram.error import InvalidToken, TelegramError

    if config.telegram_bot_token is None:
        return [
            Check(
                _("telegram"),
                False,
                _("TELEGRAM_BOT_TOKEN is not set"),
                _("create a bot with @BotFather and set its token"),
            )
        ]
    try:
        async with common.telegram(config) as bot:
            checks = [Check(_("telegram"), True, f"@{bot.username}")]
            info = await bot.get_webhook_info()
    except InvalidToken:
        return [
            Check(
                _("telegram"),
                False,
                _("the token was rejected"),
                _("check TELEGRAM_BOT_TOKEN with @BotFather"),
            )
        ]
    except TelegramError as error:
        return [
            Check(
                _("telegram"),
                False,
                f"{config.telegram_api_base_url}: {error.message}",
                _("check the network and TELEGRAM_API_BASE_URL"),
            )
        ]
    if config.webhook_url:
        detail = (
            _("set to REMINDBOT_WEBHOOK_URL")
            if info.url == config.webhook_url
            else _("not set yet: remindbot run sets it to REMINDBOT_WEBHOOK_URL")
        )
    else:
        detail = (
            _("none: long polling")
            if not info.url
            else _("a webhook is set; remindbot run (polling) will remove it")
        )
    return [*checks, Check(_("webhook"), True, detail)]


async def doctor_checks(config: Settings) -> list[Check]:
    """Everything ``doctor`` looks at, in order."""
    return [
        *await _database_checks(config),
        _translation_check(),
        *await _telegram_checks(config),
    ]


@click.command("doctor")
def doctor_command() -> None:
    """Check settings, database, schema, translations and Telegram; exit 1 on any failure."""
    from bot.settings import SettingsError, load_settings

    name = _("settings")
    try:
        config = load_settings()
    except SettingsError as error:
        click.echo(f"FAIL  {name}: {error}")
        sys.exit(common.UNREACHABLE)
    click.echo(f"OK    {name}")
    failed = False
    for check in common.run(doctor_checks(config)):
        failed |= not check.ok
        line = f"{'OK  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}"
        if check.hint:
            line += " (" + _("hint: %(hint)s") % {"hint": check.hint} + ")"
        click.echo(line)
    sys.exit(common.UNREACHABLE if failed else 0)


@click.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export_command(path: Path) -> None:
    """Write a consistent backup of the SQLite database to PATH (while the bot runs)."""
    import sqlite3
    from contextlib import closing

    from sqlalchemy.engine import make_url

    config = common.settings()
    url = make_url(config.database_url)
    if not url.drivername.startswith("sqlite"):
        raise click.UsageError(
            _(
                "For PostgreSQL, back up with pg_dump, e.g. pg_dump --format=custom "
                "--file=remindbot.dump DBNAME."
            )
        )
    source = Path(url.database or "")
    if not source.is_file():
        raise click.UsageError(_("There is no database at %(path)s.") % {"path": source})
    common.new_file(path, option="PATH")
    # The copy holds every patient's data: readable by its owner only, from the first byte.
    common.write_private(path, b"")
    try:
        # SQLite's online backup copies a consistent snapshot while the bot keeps writing.
        with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(path)) as copy:
            live.backup(copy)
    except sqlite3.Error as error:
        path.unlink(missing_ok=True)
        raise common.Unreachable(common.database_problem(error, config.database_url)) from None
    click.echo(_("Backup written to %(path)s.") % {"path": path})


@click.command("run")
def run_command() -> None:
    """Run the bot: long polling, or a webhook server if REMINDBOT_WEBHOOK_URL is set."""
    from telegram.error import InvalidToken, NetworkError

    from bot import logs
    from bot.app import DatabaseNotMigrated, serve
    from bot.web.server import CannotListen
    from scheduler.clock import SystemClock

    config = common.settings()
    token = config.token() if config.telegram_bot_token else None
    if token is None:
        raise click.UsageError(
            _(
                "TELEGRAM_BOT_TOKEN is not set: create a bot with @BotFather in Telegram "
                "and set TELEGRAM_BOT_TOKEN to the token it gives you."
            )
        )
    logs.configure(level=config.log_level, json_lines=config.log_format == "json", token=token)
    try:
        serve(config, SystemClock())
    except InvalidToken:
        raise click.UsageError(_("TELEGRAM_BOT_TOKEN was rejected by Telegram.")) from None
    except (DatabaseNotMigrated, CannotListen) as error:
        raise click.UsageError(str(error)) from None
    except NetworkError as error:
        raise common.Unreachable(
            _("Could not reach Telegram at %(url)s: %(error)s")
            % {"url": config.telegram_api_base_url, "error": error.message}
        ) from None
    except Exception as error:
        if common.is_database_error(error):
            raise common.Unreachable(common.database_problem(error, config.database_url)) from None
        raise

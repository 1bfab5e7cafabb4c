"""The ``remindbot`` command line."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot
from telegram.error import InvalidToken, NetworkError, TelegramError

from bot import logs, messages
from bot.app import DatabaseNotMigrated, serve
from bot.calendar import plan_calendar
from bot.i18n import Translator, available_locales, catalog_problems, translator
from bot.i18n import gettext as _
from bot.importer import parse_file
from bot.invites import invite_link, write_qr
from bot.request import AiohttpRequest
from bot.settings import Settings, SettingsError, load_settings
from bot.texts import KIND_TITLES
from scheduler import store
from scheduler.clock import SystemClock
from scheduler.db import (
    create_engine,
    database_label,
    is_migrated,
    is_sqlite,
    migrate,
    reading,
)
from scheduler.deliveries import DeliveryEntry, Position, delivery_log
from scheduler.errors import CourseTooEarly, ValidationError
from scheduler.models import ReminderStatus, Role
from scheduler.planner import PlanItem, Profile, plan
from scheduler.protocol import DEFAULT_PROPHYLAXIS_DAYS, Kind
from scheduler.validation import build_profile, check_locale, parse_course, parse_date

USAGE_ERROR = 2


@click.group(help=_("Reminders for patients on alemtuzumab (Lemtrada) monitoring."))
def cli() -> None:
    """Reminders for patients on alemtuzumab monitoring."""


F = TypeVar("F", bound=Callable[..., Any])


def _profile_options(function: F) -> F:
    """The options that describe a patient's courses and preferences (plan and enroll)."""
    options = [
        click.option(
            "--course",
            "courses",
            multiple=True,
            required=True,
            metavar="DATE[:DAYS]",
            help=_(
                "First infusion day and, optionally, infusion days (default 5, then 3). "
                "Repeat for each course."
            ),
        ),
        click.option("--timezone", required=True, help=_("The patient's IANA time zone.")),
        click.option(
            "--send-time", default="09:00", show_default=True, help=_("Local time, HH:MM.")
        ),
        click.option("--cbp", is_flag=True, help=_("The patient can become pregnant.")),
        click.option(
            "--prophylaxis-days",
            type=int,
            default=DEFAULT_PROPHYLAXIS_DAYS,
            show_default=True,
            help=_("Days of anti-herpes prophylaxis after each course."),
        ),
        click.option(
            "--allow-early-course",
            is_flag=True,
            help=_("Confirm a course that starts less than 12 months after the previous one."),
        ),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def _profile(
    courses: Sequence[str],
    timezone: str,
    send_time: str,
    cbp: bool,
    prophylaxis_days: int,
    allow_early_course: bool,
) -> Profile:
    """The validated profile; warnings go to stderr, errors end the command."""
    try:
        profile, warnings = build_profile(
            courses=[parse_course(text, number=n) for n, text in enumerate(courses, start=1)],
            timezone=timezone,
            send_time=send_time,
            cbp=cbp,
            prophylaxis_days=prophylaxis_days,
            allow_early_course=allow_early_course,
        )
    except CourseTooEarly as error:
        hint = _("Add --allow-early-course to confirm.")
        raise click.UsageError(f"{error.render(_)} {hint}") from error
    for warning in warnings:
        click.echo(_("Warning: %(message)s") % {"message": warning.render(_)}, err=True)
    return profile


@cli.command("plan")
@_profile_options
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "ics"]),
    default="table",
    show_default=True,
)
@click.option("--locale", default="en", show_default=True, help=_("Language of the texts."))
@click.option(
    "--render",
    is_flag=True,
    help=_("Print the messages the patient would receive, in order, in --locale."),
)
def plan_command(
    courses: Sequence[str],
    timezone: str,
    send_time: str,
    cbp: bool,
    prophylaxis_days: int,
    allow_early_course: bool,
    output: str,
    locale: str,
    render: bool,
) -> None:
    """Print the reminder plan for a course history (no database, no token needed)."""
    profile = _profile(courses, timezone, send_time, cbp, prophylaxis_days, allow_early_course)
    locale = _locale(locale)
    items = plan(profile)
    if render:
        _print_messages(profile, items, translator(locale))
    elif output == "json":
        click.echo(json.dumps([_item_json(item) for item in items], indent=2))
    elif output == "ics":
        ics = plan_calendar(items, gettext=_, stamp=SystemClock().now())
        click.echo(ics.decode(), nl=False)
    else:
        _print_table(profile, items)


def _print_messages(profile: Profile, items: Sequence[PlanItem], tr: Translator) -> None:
    """Every message of the plan as the patient would read it: one per instant."""
    by_instant: dict[datetime, list[PlanItem]] = {}
    for item in items:
        by_instant.setdefault(item.due, []).append(item)
    for due, bundle in by_instant.items():
        click.echo(f"── {tr.date(due.date())}, {tr.time(due.time())} ({due:%z}) ──")
        parts = [(item.kind, item.about) for item in bundle]
        click.echo(messages.bundle_text(parts, cbp=profile.cbp, tr=tr))
        click.echo()


def _item_json(item: PlanItem) -> dict[str, object]:
    return {
        "kind": item.kind.value,
        "occurrence": item.occurrence,
        "date": item.day.isoformat(),
        "due": item.due.isoformat(),
        "course": item.course,
        "about": item.about.isoformat() if item.about else None,
    }


def _print_table(profile: Profile, items: Sequence[PlanItem]) -> None:
    console = Console(highlight=False)
    table = Table(
        title=_("Reminder plan: %(count)d reminders, monitoring until %(end)s")
        % {"count": len(items), "end": profile.monitoring_end.isoformat()},
        title_justify="left",
    )
    table.add_column(_("Month"))
    table.add_column(_("Date"))
    table.add_column(_("Time"))
    table.add_column(_("Reminder"))
    table.add_column(_("Course"), justify="right")
    month = ""
    for item in items:
        item_month = item.day.strftime("%Y-%m")
        if month and item_month != month:
            table.add_section()
        table.add_row(
            item_month if item_month != month else "",
            item.day.strftime("%a %d"),
            item.due.strftime("%H:%M %z"),
            _(KIND_TITLES[item.kind]),
            str(item.course or ""),
        )
        month = item_month
    console.print(table)

    counts = Counter(item.kind for item in items)
    summary = Table(title=_("Per kind"), title_justify="left")
    summary.add_column(_("Kind"))
    summary.add_column(_("Count"), justify="right")
    summary.add_column(_("First"))
    summary.add_column(_("Last"))
    for kind in Kind:
        if counts[kind]:
            dates = [item.day for item in items if item.kind is kind]
            summary.add_row(kind.value, str(counts[kind]), str(dates[0]), str(dates[-1]))
    console.print(summary)


# --- commands that use the database -------------------------------------------------------

CLI_ACTOR = "cli"
T = TypeVar("T")


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@asynccontextmanager
async def _database(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the configured database, which must be at the current schema.

    A SQLite file is brought up to date on the spot; a PostgreSQL database shared by
    several processes is upgraded only by an explicit ``remindbot migrate``.
    """
    engine = create_engine(settings.database_url)
    try:
        if is_sqlite(engine):
            await migrate(engine)
        elif not await is_migrated(engine):
            raise click.UsageError(
                _("The database %(url)s is not at the current schema: run remindbot migrate.")
                % {"url": database_label(settings.database_url)}
            )
        yield async_sessionmaker(engine, expire_on_commit=False)
    finally:
        await engine.dispose()


def _bot(settings: Settings) -> Bot:
    return Bot(
        settings.token(),
        base_url=settings.telegram_api_base_url,
        request=AiohttpRequest(),
        get_updates_request=AiohttpRequest(connection_pool_size=1),
    )


async def _bot_username(settings: Settings) -> str:
    """The bot's @username for invite links: from the settings, else asked of Telegram."""
    if settings.bot_username:
        return settings.bot_username
    if settings.telegram_bot_token is None:
        raise click.UsageError(
            _("Set REMINDBOT_BOT_USERNAME or TELEGRAM_BOT_TOKEN so invite links can name the bot.")
        )
    try:
        async with _bot(settings) as bot:
            return bot.username
    except InvalidToken:
        raise click.UsageError(_("TELEGRAM_BOT_TOKEN was rejected by Telegram.")) from None
    except TelegramError as error:
        raise click.UsageError(
            _(
                "Could not ask Telegram for the bot's username (%(error)s); "
                "set REMINDBOT_BOT_USERNAME."
            )
            % {"error": error.message}
        ) from None


@cli.command("migrate")
def migrate_command() -> None:
    """Upgrade the database to the current schema (safe to run again)."""
    settings = _settings()

    async def upgrade() -> None:
        engine = create_engine(settings.database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    _run(upgrade())
    click.echo(
        _("Database %(url)s is up to date.") % {"url": database_label(settings.database_url)}
    )


def _locale(value: str) -> str:
    return check_locale(value, available_locales())


def _expiry(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


@cli.command("enroll")
@click.option("--label", required=True, help=_("The clinic's pseudonym for the patient."))
@click.option("--locale", required=True, help=_("The patient's language, e.g. de."))
@_profile_options
@click.option(
    "--coordinator",
    type=int,
    help=_("Telegram user id of the coordinator who receives this patient's alerts."),
)
@click.option(
    "--qr",
    "qr_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=_("Where to write the invite QR code (PNG). Default: invite-LABEL.png"),
)
def enroll_command(
    label: str,
    locale: str,
    courses: Sequence[str],
    timezone: str,
    send_time: str,
    cbp: bool,
    prophylaxis_days: int,
    allow_early_course: bool,
    coordinator: int | None,
    qr_path: Path | None,
) -> None:
    """Enrol a patient and print their one-time invite link."""
    enrolment = store.Enrolment(
        label=store.check_label(label),
        locale=_locale(locale),
        profile=_profile(courses, timezone, send_time, cbp, prophylaxis_days, allow_early_course),
        coordinator_id=coordinator,
    )
    settings = _settings()
    path = qr_path or Path(f"invite-{enrolment.label}.png")

    async def enroll() -> tuple[store.Enrolled, str]:
        username = await _bot_username(settings)
        async with _database(settings) as sessions, sessions.begin() as session:
            await store.bootstrap_admins(session, user_ids=settings.admin_ids, now=_now())
            [enrolled] = await store.enroll(
                session,
                enrolments=[enrolment],
                actor=CLI_ACTOR,
                now=_now(),
                late_window=settings.late_window,
            )
            link = invite_link(username, enrolled.invite_token)
            write_qr(link, path)
        return enrolled, link

    enrolled, link = _run(enroll())
    click.echo(
        _("Enrolled %(label)s. Invite link (single use, valid until %(expires)s):")
        % {"label": enrolled.label, "expires": _expiry(enrolled.invite_expires_at)}
    )
    click.echo(link)
    click.echo(_("QR code: %(path)s") % {"path": path})


def _now() -> datetime:
    return SystemClock().now()


@cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--skip-invalid",
    is_flag=True,
    help=_("Import the valid rows and list the invalid ones, instead of importing nothing."),
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help=_("CSV file for the invite links. Default: next to the input, ending -invites.csv"),
)
def import_command(csv_file: Path, skip_invalid: bool, output: Path | None) -> None:
    """Enrol patients from a CSV file; every row is checked before anything is stored."""
    settings = _settings()
    output = output or csv_file.with_name(f"{csv_file.stem}-invites.csv")
    if output.exists():
        raise click.UsageError(
            _("%(path)s already exists; choose another --output.") % {"path": output}
        )
    data = csv_file.read_bytes()
    err = Console(stderr=True, highlight=False)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(_("Checking"), total=data.count(b"\n"))
        parsed = parse_file(
            data, locales=available_locales(), progress=lambda n: progress.advance(task, n)
        )

    async def existing_labels() -> set[str]:
        async with _database(settings) as sessions, sessions() as session:
            return {summary.label for summary in await store.list_patients(session)}

    taken = _run(existing_labels())
    errors = [(e.line, e.label, e.error.render(_)) for e in parsed.errors]
    errors += [
        (line, enrolment.label, store.LabelTaken(label=enrolment.label).render(_))
        for line, enrolment in parsed.enrolments
        if enrolment.label in taken
    ]
    errors.sort()
    good = [enrolment for _line, enrolment in parsed.enrolments if enrolment.label not in taken]
    for line, _label, message in errors:
        click.echo(_("line %(line)d: %(message)s") % {"line": line, "message": message}, err=True)
    if errors and not skip_invalid:
        raise click.UsageError(
            _("%(count)d invalid rows; nothing was imported. Fix them or use --skip-invalid.")
            % {"count": len(errors)}
        )

    async def import_rows() -> list[store.Enrolled]:
        username = await _bot_username(settings)
        enrolled: list[store.Enrolled] = []
        async with _database(settings) as sessions, sessions.begin() as session:
            with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
                task = progress.add_task(_("Importing"), total=len(good))
                for start in range(0, len(good), 500):
                    batch = good[start : start + 500]
                    enrolled += await store.enroll(
                        session,
                        enrolments=batch,
                        actor=CLI_ACTOR,
                        now=_now(),
                        late_window=settings.late_window,
                    )
                    progress.advance(task, len(batch))
            with output.open("x", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(["label", "invite_link", "expires_at"])
                for row in enrolled:
                    link = invite_link(username, row.invite_token)
                    writer.writerow([row.label, link, row.invite_expires_at.isoformat()])
        return enrolled

    enrolled = _run(import_rows())
    click.echo(
        _("Imported %(count)d patients; invite links in %(path)s (keep this file safe).")
        % {"count": len(enrolled), "path": output}
    )
    if errors:
        click.echo(_("Skipped %(count)d invalid rows.") % {"count": len(errors)})


@cli.command("patients")
@click.option("--format", "output", type=click.Choice(["table", "json"]), default="table")
def patients_command(output: str) -> None:
    """List patients with their status, next reminder and latest acknowledgement."""
    settings = _settings()

    async def fetch() -> list[store.PatientSummary]:
        async with _database(settings) as sessions, sessions() as session:
            return await store.list_patients(session)

    summaries = _run(fetch())

    def local(moment: datetime | None, zone: str) -> str:
        return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes") if moment else ""

    if output == "json":
        rows = [
            {
                "label": p.label,
                "status": p.status,
                "next_due": local(p.next_due, p.timezone) or None,
                "last_acknowledged": local(p.last_acknowledged, p.timezone) or None,
            }
            for p in summaries
        ]
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=_("Patients: %(count)d") % {"count": len(summaries)}, title_justify="left")
    for column in (_("Label"), _("Status"), _("Next reminder"), _("Last acknowledged")):
        table.add_column(column)
    for p in summaries:
        table.add_row(
            p.label, p.status, local(p.next_due, p.timezone), local(p.last_acknowledged, p.timezone)
        )
    Console(highlight=False).print(table)


def _day_start(text: str | None, *, option: str, next_day: bool = False) -> datetime | None:
    """Midnight UTC at the start of a YYYY-MM-DD date (or of the day after it)."""
    if text is None:
        return None
    try:
        day = parse_date(text)
    except ValidationError as error:
        raise click.BadParameter(error.render(_), param_hint=option) from None
    if next_day:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@cli.command("deliveries")
@click.option("--patient", "label", help=_("Only this patient's reminders (their label)."))
@click.option("--status", type=click.Choice([s.value for s in ReminderStatus]))
@click.option("--kind", type=click.Choice([k.value for k in Kind]))
@click.option("--since", metavar="DATE", help=_("Due on or after this day (UTC), YYYY-MM-DD."))
@click.option(
    "--until",
    metavar="DATE",
    help=_("Due on or before this day (UTC), YYYY-MM-DD. Default: due until now."),
)
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=_("At most this many reminders (default: 50 for a table, all for csv and json)."),
)
def deliveries_command(
    label: str | None,
    status: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    output: str,
    limit: int | None,
) -> None:
    """The delivery log: every reminder, newest due first, with its status history."""
    settings = _settings()
    filters: dict[str, Any] = {
        "label": label,
        "status": status,
        "kind": kind,
        "since": _day_start(since, option="--since"),
        "until": _day_start(until, option="--until", next_day=True) or _now(),
    }
    wanted = limit if limit is not None else (50 if output == "table" else 0)

    async def fetch() -> list[DeliveryEntry]:
        entries: list[DeliveryEntry] = []
        after: Position | None = None
        async with _database(settings) as sessions:
            while not wanted or len(entries) < wanted:
                batch = min(1000, wanted - len(entries)) if wanted else 1000
                # A short read per batch: a long export never holds the database.
                async with reading(sessions) as session:
                    page = await delivery_log(session, limit=batch, after=after, **filters)
                entries += page
                if len(page) < batch:
                    break
                after = page[-1].position
        return entries

    entries = _run(fetch())
    if output == "json":
        click.echo(json.dumps([_entry_json(entry) for entry in entries], indent=2))
    elif output == "csv":
        _write_deliveries_csv(entries)
    else:
        _print_deliveries(entries)


def _local(moment: datetime, zone: str) -> str:
    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes")


def _entry_json(entry: DeliveryEntry) -> dict[str, Any]:
    return {
        "reminder_id": entry.reminder_id,
        "label": entry.label,
        "kind": entry.kind,
        "occurrence": entry.occurrence,
        "due": _local(entry.due_at, entry.timezone),
        "status": entry.status,
        "attempts": entry.attempts,
        "history": [
            {
                "status": change.status,
                "at": change.at.isoformat(),
                "telegram_message_id": change.telegram_message_id,
                "error_code": change.error_code,
                "detail": change.detail,
            }
            for change in entry.history
        ],
    }


def _write_deliveries_csv(entries: Sequence[DeliveryEntry]) -> None:
    """One row per status change, so the whole history fits a spreadsheet."""
    writer = csv.writer(sys.stdout)
    writer.writerow(
        [
            "reminder_id",
            "label",
            "kind",
            "occurrence",
            "due",
            "status",
            "event_status",
            "event_at",
            "telegram_message_id",
            "error_code",
            "detail",
        ]
    )
    for entry in entries:
        head = [
            entry.reminder_id,
            entry.label or "",
            entry.kind,
            entry.occurrence,
            _local(entry.due_at, entry.timezone),
            entry.status,
        ]
        for change in entry.history or [None]:
            if change is None:
                writer.writerow([*head, "", "", "", "", ""])
            else:
                writer.writerow(
                    [
                        *head,
                        change.status,
                        change.at.isoformat(),
                        change.telegram_message_id or "",
                        change.error_code or "",
                        change.detail or "",
                    ]
                )


def _print_deliveries(entries: Sequence[DeliveryEntry]) -> None:
    table = Table(
        title=_("Delivery log: %(count)d reminders") % {"count": len(entries)},
        title_justify="left",
    )
    for column in (_("Due"), _("Patient"), _("Reminder"), _("Status"), _("History")):
        table.add_column(column)
    for entry in entries:
        history = "\n".join(
            " ".join(
                part
                for part in (
                    change.status,
                    change.at.astimezone(ZoneInfo(entry.timezone)).strftime("%Y-%m-%d %H:%M"),
                    f"[{change.error_code}]" if change.error_code else "",
                    change.detail or "",
                )
                if part
            )
            for change in entry.history
        )
        table.add_row(
            _local(entry.due_at, entry.timezone),
            entry.label or _("(erased)"),
            _(KIND_TITLES[Kind(entry.kind)]),
            entry.status,
            history,
        )
    Console(highlight=False).print(table)


@cli.group("course")
def course_group() -> None:
    """Treatment courses of enrolled patients."""


@course_group.command("add")
@click.argument("label")
@click.argument("course", metavar="DATE[:DAYS]")
@click.option(
    "--allow-early-course",
    is_flag=True,
    help=_("Confirm a course that starts less than 12 months after the previous one."),
)
def course_add_command(label: str, course: str, allow_early_course: bool) -> None:
    """Record a patient's next course; their reminders are re-planned."""
    settings = _settings()

    async def add() -> int:
        async with _database(settings) as sessions, sessions.begin() as session:
            patient = await store.patient_by_label(session, label=label)
            if patient is None:
                raise click.UsageError(_("No patient has the label %(label)s.") % {"label": label})
            start, days = parse_course(course, number=len(patient.courses) + 1)
            try:
                added = await store.add_course(
                    session,
                    patient_id=patient.id,
                    start=start,
                    days=days,
                    allow_early=allow_early_course,
                    actor=CLI_ACTOR,
                    now=_now(),
                    late_window=settings.late_window,
                )
            except CourseTooEarly as error:
                hint = _("Add --allow-early-course to confirm.")
                raise click.UsageError(f"{error.render(_)} {hint}") from error
            assert added is not None
            return added.number

    number = _run(add())
    click.echo(
        _("Recorded course %(number)d for %(label)s; reminders re-planned.")
        % {"number": number, "label": label}
    )


@cli.command("grant")
@click.argument("user_id", type=int)
@click.argument("role", type=click.Choice([role.value for role in Role]))
def grant_command(user_id: int, role: str) -> None:
    """Give a Telegram user a staff role."""
    settings = _settings()

    async def grant() -> None:
        async with _database(settings) as sessions, sessions.begin() as session:
            await store.grant(
                session, user_id=user_id, role=Role(role), actor=CLI_ACTOR, now=_now()
            )

    _run(grant())
    click.echo(_("User %(user)d is now %(role)s.") % {"user": user_id, "role": role})


@cli.command("revoke")
@click.argument("user_id", type=int)
def revoke_command(user_id: int) -> None:
    """Remove a Telegram user's staff role."""
    settings = _settings()

    async def revoke() -> bool:
        async with _database(settings) as sessions, sessions.begin() as session:
            return await store.revoke(session, user_id=user_id, actor=CLI_ACTOR, now=_now())

    if not _run(revoke()):
        raise click.UsageError(_("User %(user)d has no staff role.") % {"user": user_id})
    click.echo(_("User %(user)d no longer has a staff role.") % {"user": user_id})


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    hint: str = ""


async def doctor_checks(settings: Settings) -> list[Check]:
    """Everything ``doctor`` looks at, in order; later checks need earlier ones."""
    checks: list[Check] = []
    engine = create_engine(settings.database_url)
    where = database_label(settings.database_url)
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks.append(Check(_("database"), True, where))
        migrated = await is_migrated(engine)
        checks.append(
            Check(_("migrations"), True, _("at the current schema"))
            if migrated
            else Check(
                _("migrations"), False, _("behind the current schema"), _("run remindbot migrate")
            )
        )
    except (SQLAlchemyError, OSError) as error:
        checks.append(
            Check(
                _("database"),
                False,
                f"{where}: {type(error).__name__}",
                _("check DATABASE_URL and that the database server is running"),
            )
        )
    finally:
        await engine.dispose()

    problems = catalog_problems()
    checks.append(
        Check(
            _("translations"),
            not problems,
            "; ".join(problems) or _("%(count)d languages") % {"count": len(available_locales())},
            _("reinstall remindbot: its locales/ files are missing or damaged") if problems else "",
        )
    )

    if settings.telegram_bot_token is None:
        checks.append(
            Check(
                _("telegram"),
                False,
                _("TELEGRAM_BOT_TOKEN is not set"),
                _("create a bot with @BotFather and set its token"),
            )
        )
        return checks
    try:
        async with _bot(settings) as bot:
            checks.append(Check(_("telegram"), True, f"@{bot.username}"))
            info = await bot.get_webhook_info()
    except InvalidToken:
        checks.append(
            Check(
                _("telegram"),
                False,
                _("the token was rejected"),
                _("check TELEGRAM_BOT_TOKEN with @BotFather"),
            )
        )
        return checks
    except TelegramError as error:
        checks.append(
            Check(
                _("telegram"),
                False,
                f"{settings.telegram_api_base_url}: {error.message}",
                _("check the network and TELEGRAM_API_BASE_URL"),
            )
        )
        return checks
    if settings.webhook_url:
        same = info.url == settings.webhook_url
        checks.append(
            Check(
                _("webhook"),
                True,
                _("set to REMINDBOT_WEBHOOK_URL")
                if same
                else _("not set yet: remindbot run sets it to REMINDBOT_WEBHOOK_URL"),
            )
        )
    else:
        checks.append(
            Check(
                _("webhook"),
                True,
                _("none: long polling")
                if not info.url
                else _("a webhook is set; remindbot run (polling) will remove it"),
            )
        )
    return checks


@cli.command("doctor")
def doctor_command() -> None:
    """Check settings, database, schema, translations and Telegram; exit 1 on any failure."""
    name = _("settings")
    try:
        settings = load_settings()
    except SettingsError as error:
        click.echo(f"FAIL  {name}: {error}")
        sys.exit(1)
    click.echo(f"OK    {name}")
    failed = False
    for check in _run(doctor_checks(settings)):
        failed |= not check.ok
        line = f"{'OK  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}"
        if check.hint:
            line += " (" + _("hint: %(hint)s") % {"hint": check.hint} + ")"
        click.echo(line)
    sys.exit(1 if failed else 0)


@cli.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def export_command(path: Path) -> None:
    """Write a consistent backup of the SQLite database to PATH (while the bot runs)."""
    settings = _settings()
    url = make_url(settings.database_url)
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
    if path.exists():
        raise click.UsageError(_("%(path)s already exists; choose another file.") % {"path": path})
    # SQLite's online backup copies a consistent snapshot while the bot keeps writing.
    with closing(sqlite3.connect(source)) as live, closing(sqlite3.connect(path)) as copy:
        live.backup(copy)
    click.echo(_("Backup written to %(path)s.") % {"path": path})


@cli.command("run")
def run_command() -> None:
    """Run the bot: long polling, or a webhook server if REMINDBOT_WEBHOOK_URL is set."""
    settings = _settings()
    logs.configure(
        level=settings.log_level, json_lines=settings.log_format == "json", token=settings.token()
    )
    try:
        serve(settings, SystemClock())
    except InvalidToken:
        raise click.UsageError(_("TELEGRAM_BOT_TOKEN was rejected by Telegram.")) from None
    except DatabaseNotMigrated as error:
        raise click.UsageError(str(error)) from None
    except NetworkError as error:
        raise click.ClickException(
            _("Could not reach Telegram at %(url)s: %(error)s")
            % {"url": settings.telegram_api_base_url, "error": error.message}
        ) from None


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point: bad input ends with one line on stderr and exit code 2, no traceback."""
    try:
        code = cli.main(args=argv, prog_name="remindbot", standalone_mode=False)
    except click.ClickException as error:
        click.echo(f"remindbot: {error.format_message()}", err=True)
        code = USAGE_ERROR
    except ValidationError as error:
        click.echo(f"remindbot: {error.render(_)}", err=True)
        code = USAGE_ERROR
    except SettingsError as error:
        click.echo(f"remindbot: {error}", err=True)
        code = USAGE_ERROR
    except click.Abort:
        code = 1
    except DBAPIError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
        click.echo(f"remindbot: database error: {reason}", err=True)
        code = 1
    except (SQLAlchemyError, OSError) as error:
        # The first line only: later lines may quote SQL parameters.
        reason = str(error).splitlines()[0] if str(error) else ""
        click.echo(f"remindbot: {type(error).__name__}: {reason}", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)

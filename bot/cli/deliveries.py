"""``remindbot deliveries``: the delivery log, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, TextIO

import click

from bot.cli import common
from bot.i18n import gettext as _
from bot.i18n import ngettext
from scheduler.protocol import Kind
from scheduler.statuses import ReminderStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from scheduler import teams
    from scheduler.deliveries import DeliveryEntry


def N_(message: str) -> str:
    return message


# Reminder kinds in a word or two, for narrow tables (the CLI's, the console's).
SHORT_KIND_TITLES: Final[dict[Kind, str]] = {
    # TRANSLATORS: short name of a reminder kind in a table column.
    Kind.COURSE_UPCOMING: N_("Course soon"),
    # TRANSLATORS: short name of a reminder kind: warning signs after an infusion.
    Kind.POST_INFUSION_WARNING: N_("After infusion"),
    # TRANSLATORS: short name of a reminder kind: anti-herpes medicine.
    Kind.ANTIVIRAL_PROPHYLAXIS: N_("Anti-herpes"),
    # TRANSLATORS: short name of a reminder kind: monthly blood and urine tests.
    Kind.LABS_MONTHLY: N_("Monthly tests"),
    # TRANSLATORS: short name of a reminder kind: thyroid blood test.
    Kind.THYROID_QUARTERLY: N_("Thyroid test"),
    # TRANSLATORS: short name of a reminder kind.
    Kind.CONTRACEPTION: N_("Contraception"),
    # TRANSLATORS: short name of a reminder kind: end of the contraception period.
    Kind.CONTRACEPTION_END: N_("Contraception end"),
    # TRANSLATORS: short name of a reminder kind: the next course is due.
    Kind.COURSE_DUE: N_("Course due"),
    # TRANSLATORS: short name of a reminder kind: yearly skin (and cervical) screening.
    Kind.ANNUAL_SCREENING: N_("Yearly screening"),
    # TRANSLATORS: short name of a reminder kind: the end of the 48-month monitoring.
    Kind.MONITORING_END: N_("Monitoring end"),
}

TABLE_LIMIT = 50
BATCH = 1000
# The default window of activity: what happened in the last week.
ACTIVE_DAYS = 7
CSV_COLUMNS: list[object] = [
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


def _day_start(text: str | None, *, option: str, next_day: bool = False) -> datetime | None:
    """Midnight UTC at the start of a YYYY-MM-DD date (or of the day after it)."""
    from scheduler.errors import ValidationError
    from scheduler.validation import parse_date

    if text is None:
        return None
    try:
        day = parse_date(text)
    except ValidationError as error:
        raise click.BadParameter(error.render(_), param_hint=option) from None
    if next_day:
        day += timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@click.command("deliveries")
@click.option("--patient", "label", help=_("Only this patient's reminders (their label)."))
@click.option("--status", type=click.Choice([s.value for s in ReminderStatus]))
@click.option("--kind", type=click.Choice([k.value for k in Kind]))
@click.option("--since", metavar="DATE", help=_("Due on or after this day (UTC), YYYY-MM-DD."))
@click.option("--until", metavar="DATE", help=_("Due on or before this day (UTC), YYYY-MM-DD."))
@click.option(
    "--active-days",
    type=click.IntRange(min=0),
    default=ACTIVE_DAYS,
    show_default=True,
    help=_(
        "Only reminders with a status change in the last N days, or that fell due in them "
        "(cancellations and failures show at once); 0: every reminder."
    ),
)
@click.option("--format", "output", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=None,
    help=_("At most this many reminders (default: 50 for a table, all for csv and json)."),
)
@click.option(
    "--history", is_flag=True, help=_("Show each reminder's status history in the table.")
)
@common.team_option(_("Only this care team's patients. Default: every team."))
def deliveries_command(
    label: str | None,
    status: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    active_days: int,
    output: str,
    limit: int | None,
    history: bool,
    team: str | None,
) -> None:
    """The delivery log: reminders active in the last 7 days (--active-days), newest due
    first, with their status history."""
    from scheduler.db import reading

    config = common.settings()
    now = common.now()
    filters = Filters(
        label=label,
        status=status,
        kind=kind,
        since=_day_start(since, option="--since"),
        until=_day_start(until, option="--until", next_day=True),
        active_since=now - timedelta(days=active_days) if active_days else None,
        now=now,
    )
    wanted = limit if limit is not None else (TABLE_LIMIT if output == "table" else 0)

    async def fetch() -> tuple[list[DeliveryEntry], int]:
        async with common.database(config) as sessions:
            async with reading(sessions) as session:
                scope = await common.team_scope(session, team)
            return await collect(sessions, scope=scope, filters=filters, limit=wanted)

    entries, total = common.run(fetch())
    if output == "json":
        click.echo(json.dumps([_entry_json(entry) for entry in entries], indent=2))
    elif output == "csv":
        write_csv(entries, sys.stdout)
    else:
        _print_table(entries, total, history=history)
    if len(entries) < total and output != "table":
        click.echo(
            _("Showing %(shown)d of %(total)d reminders; raise --limit to see more.")
            % {"shown": len(entries), "total": total},
            err=True,
        )


@dataclass(frozen=True, slots=True)
class Filters:
    """The delivery log's filters, as ``scheduler.deliveries.delivery_log`` takes them
    (the scope apart): the same for the command line and the web console."""

    label: str | None = None
    status: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    active_since: datetime | None = None
    now: datetime | None = None

    def arguments(self) -> dict[str, Any]:
        return {field.name: getattr(self, field.name) for field in fields(self)}


async def collect(
    sessions: async_sessionmaker[AsyncSession],
    *,
    scope: teams.Scope,
    filters: Filters,
    limit: int = 0,
) -> tuple[list[DeliveryEntry], int]:
    """The entries of the log with ``filters`` (at most ``limit``; 0: all) and how many
    there are, read in batches, each in a short read: a long export never holds the
    database."""
    from scheduler.db import reading
    from scheduler.deliveries import Position, count_deliveries, delivery_log

    arguments = filters.arguments()
    async with reading(sessions) as session:
        total = await count_deliveries(session, scope=scope, **arguments)
    entries: list[DeliveryEntry] = []
    after: Position | None = None
    while not limit or len(entries) < limit:
        batch = min(BATCH, limit - len(entries)) if limit else BATCH
        async with reading(sessions) as session:
            page = await delivery_log(session, scope=scope, limit=batch, after=after, **arguments)
        entries += page
        if len(page) < batch:
            break
        after = page[-1].position
    return entries, total


def _local(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

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


def csv_rows(entries: Sequence[DeliveryEntry]) -> list[list[object]]:
    """One row per status change, so the whole history fits a spreadsheet."""
    rows: list[list[object]] = [CSV_COLUMNS]
    for entry in entries:
        head = [
            entry.reminder_id,
            entry.label,
            entry.kind,
            entry.occurrence,
            _local(entry.due_at, entry.timezone),
            entry.status,
        ]
        if not entry.history:
            rows.append([*head, "", "", "", "", ""])
        for change in entry.history:
            rows.append(
                [
                    *head,
                    change.status,
                    change.at.isoformat(),
                    change.telegram_message_id or "",
                    change.error_code or "",
                    change.detail or "",
                ]
            )
    return rows


def write_csv(entries: Sequence[DeliveryEntry], out: TextIO) -> None:
    """The CSV of ``remindbot deliveries --format csv`` (and of the console's download),
    every cell quoted against spreadsheet formulas."""
    from bot.spreadsheet import safe_cell

    writer = csv.writer(out)
    for row in csv_rows(entries):
        writer.writerow([safe_cell(value) for value in row])


def _short(moment: datetime, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


def _print_table(entries: Sequence[DeliveryEntry], total: int, *, history: bool) -> None:
    """Four short columns, one line per reminder, to stay readable at 80 columns; with
    ``history``, a line per status change under its reminder."""
    from rich.console import Console
    from rich.table import Table

    title = (
        ngettext("Delivery log: %(total)d reminder", "Delivery log: %(total)d reminders", total)
        % {"total": total}
        if len(entries) == total
        else _("Delivery log: the newest %(shown)d of %(total)d reminders (--limit for more)")
        % {"shown": len(entries), "total": total}
    )
    table = Table(title=title, title_justify="left", pad_edge=False, box=None)
    table.add_column(_("Due (local)"), no_wrap=True)
    table.add_column(_("Patient"), overflow="fold", max_width=24)
    table.add_column(_("Reminder"), no_wrap=True, overflow="ellipsis", max_width=22)
    table.add_column(_("Status"), no_wrap=True)
    for entry in entries:
        table.add_row(
            _short(entry.due_at, entry.timezone),
            entry.label,
            _(SHORT_KIND_TITLES[Kind(entry.kind)]),
            entry.status,
        )
        if not history:
            continue
        for change in entry.history:
            note = " ".join(
                part
                for part in (
                    f"[{change.error_code}]" if change.error_code else "",
                    change.detail or "",
                )
                if part
            )
            table.add_row(
                f"  {_short(change.at, entry.timezone)}",
                "",
                f"  {note}" if note else "",
                change.status,
                style="dim",
            )
    Console(highlight=False).print(table)

"""``remindbot deliveries``: the delivery log, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from bot.cli import common
from bot.i18n import gettext as _
from bot.i18n import ngettext
from scheduler.protocol import Kind
from scheduler.statuses import ReminderStatus

if TYPE_CHECKING:
    from scheduler.deliveries import DeliveryEntry

TABLE_LIMIT = 50
BATCH = 1000
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
@common.team_option(_("Only this care team's patients. Default: every team."))
def deliveries_command(
    label: str | None,
    status: str | None,
    kind: str | None,
    since: str | None,
    until: str | None,
    output: str,
    limit: int | None,
    team: str | None,
) -> None:
    """The delivery log: every reminder, newest due first, with its status history."""
    from scheduler.db import reading
    from scheduler.deliveries import Position, count_deliveries, delivery_log

    config = common.settings()
    filters: dict[str, Any] = {
        "label": label,
        "status": status,
        "kind": kind,
        "since": _day_start(since, option="--since"),
        "until": _day_start(until, option="--until", next_day=True) or common.now(),
    }
    wanted = limit if limit is not None else (TABLE_LIMIT if output == "table" else 0)

    async def fetch() -> tuple[list[DeliveryEntry], int]:
        entries: list[DeliveryEntry] = []
        after: Position | None = None
        async with common.database(config) as sessions:
            async with reading(sessions) as session:
                filters["scope"] = await common.team_scope(session, team)
                total = await count_deliveries(session, **filters)
            while not wanted or len(entries) < wanted:
                batch = min(BATCH, wanted - len(entries)) if wanted else BATCH
                # A short read per batch: a long export never holds the database.
                async with reading(sessions) as session:
                    page = await delivery_log(session, limit=batch, after=after, **filters)
                entries += page
                if len(page) < batch:
                    break
                after = page[-1].position
        return entries, total

    entries, total = common.run(fetch())
    if output == "json":
        click.echo(json.dumps([_entry_json(entry) for entry in entries], indent=2))
    elif output == "csv":
        _write_csv(entries)
    else:
        _print_table(entries, total)
    if len(entries) < total and output != "table":
        click.echo(
            _("Showing %(shown)d of %(total)d reminders; raise --limit to see more.")
            % {"shown": len(entries), "total": total},
            err=True,
        )


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


def _write_csv(entries: Sequence[DeliveryEntry]) -> None:
    from bot.spreadsheet import safe_cell

    writer = csv.writer(sys.stdout)
    for row in csv_rows(entries):
        writer.writerow([safe_cell(value) for value in row])


def _print_table(entries: Sequence[DeliveryEntry], total: int) -> None:
    from zoneinfo import ZoneInfo

    from rich.console import Console
    from rich.table import Table

    from bot.texts import KIND_TITLES

    title = (
        ngettext("Delivery log: %(total)d reminder", "Delivery log: %(total)d reminders", total)
        % {"total": total}
        if len(entries) == total
        else _("Delivery log: the newest %(shown)d of %(total)d reminders (--limit for more)")
        % {"shown": len(entries), "total": total}
    )
    table = Table(title=title, title_justify="left")
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
            entry.label,
            _(KIND_TITLES[Kind(entry.kind)]),
            entry.status,
            history,
        )
    Console(highlight=False).print(table)

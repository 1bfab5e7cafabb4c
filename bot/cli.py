"""The ``remindbot`` command line."""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Sequence

import click
from rich.console import Console
from rich.table import Table

from bot.calendar import plan_calendar
from bot.i18n import gettext as _
from bot.texts import KIND_TITLES
from scheduler.clock import SystemClock
from scheduler.errors import CourseTooEarly, ValidationError
from scheduler.planner import PlanItem, Profile, plan
from scheduler.protocol import DEFAULT_PROPHYLAXIS_DAYS, Kind
from scheduler.validation import build_profile, parse_course

USAGE_ERROR = 2


@click.group(help=_("Reminders for patients on alemtuzumab (Lemtrada) monitoring."))
def cli() -> None:
    """Reminders for patients on alemtuzumab monitoring."""


@cli.command("plan")
@click.option(
    "--course",
    "courses",
    multiple=True,
    required=True,
    metavar="DATE[:DAYS]",
    help=_("First infusion day and, optionally, infusion days (default 5, then 3). Repeat."),
)
@click.option("--timezone", required=True, help=_("The patient's IANA time zone."))
@click.option("--send-time", default="09:00", show_default=True, help=_("Local time, HH:MM."))
@click.option("--cbp", is_flag=True, help=_("The patient can become pregnant."))
@click.option(
    "--prophylaxis-days",
    type=int,
    default=DEFAULT_PROPHYLAXIS_DAYS,
    show_default=True,
    help=_("Days of anti-herpes prophylaxis after each course."),
)
@click.option(
    "--allow-early-course",
    is_flag=True,
    help=_("Confirm a course that starts less than 12 months after the previous one."),
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "json", "ics"]),
    default="table",
    show_default=True,
)
def plan_command(
    courses: Sequence[str],
    timezone: str,
    send_time: str,
    cbp: bool,
    prophylaxis_days: int,
    allow_early_course: bool,
    output: str,
) -> None:
    """Print the reminder plan for a course history (no database, no token needed)."""
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
    items = plan(profile)
    if output == "json":
        click.echo(json.dumps([_item_json(item) for item in items], indent=2))
    elif output == "ics":
        ics = plan_calendar(items, gettext=_, stamp=SystemClock().now())
        click.echo(ics.decode(), nl=False)
    else:
        _print_table(profile, items)


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
    except click.Abort:
        code = 1
    sys.exit(code if isinstance(code, int) else 0)

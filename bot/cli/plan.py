"""``remindbot plan``: the reminder programme for a course history, without a database."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bot.i18n import gettext as _
from scheduler.errors import CourseTooEarly
from scheduler.planner import PlanItem, Profile, plan
from scheduler.protocol import DEFAULT_PROPHYLAXIS_DAYS, Kind
from scheduler.validation import build_profile, parse_course

if TYPE_CHECKING:
    from bot.i18n import Translator

F = TypeVar("F", bound=Callable[..., Any])
EARLY_COURSE_HELP = _(
    "Confirm a course that starts earlier than 12 months minus 30 days after the previous one."
)


def profile_options(function: F) -> F:
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
        click.option(
            "--timezone",
            required=True,
            help=_("The patient's time zone: an IANA name (Europe/Berlin) or a city (Berlin)."),
        ),
        click.option(
            "--send-time", default="09:00", show_default=True, help=_("Local time, HH:MM.")
        ),
        click.option("--cbp", is_flag=True, help=_("The patient can become pregnant.")),
        click.option(
            "--cervix/--no-cervix",
            default=None,
            help=_(
                "The patient has a cervix: the yearly reminder adds cervical screening "
                "(default: as --cbp)."
            ),
        ),
        click.option(
            "--prophylaxis-days",
            type=int,
            default=DEFAULT_PROPHYLAXIS_DAYS,
            show_default=True,
            help=_("Days of anti-herpes prophylaxis after each course."),
        ),
        click.option("--allow-early-course", is_flag=True, help=EARLY_COURSE_HELP),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def early_course_error(error: CourseTooEarly) -> click.UsageError:
    hint = _("Add --allow-early-course to confirm.")
    return click.UsageError(f"{error.render(_)} {hint}")


def build(
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
        raise early_course_error(error) from error
    for warning in warnings:
        click.echo(_("Warning: %(message)s") % {"message": warning.render(_)}, err=True)
    return profile


def check_locale_option(value: str) -> str:
    from bot.i18n import available_locales
    from scheduler.validation import check_locale

    return check_locale(value, available_locales())


@click.command("plan")
@profile_options
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
    cervix: bool | None,
    prophylaxis_days: int,
    allow_early_course: bool,
    output: str,
    locale: str,
    render: bool,
) -> None:
    """Print the reminder plan for a course history (no database, no token needed)."""
    profile = build(courses, timezone, send_time, cbp, prophylaxis_days, allow_early_course)
    locale = check_locale_option(locale)
    items = plan(profile)
    if render:
        from bot.i18n import translator

        _print_messages(items, cervix=cbp if cervix is None else cervix, tr=translator(locale))
    elif output == "json":
        click.echo(json.dumps([_item_json(item) for item in items], indent=2))
    elif output == "ics":
        from bot.calendar import plan_calendar
        from bot.cli.common import now
        from bot.i18n import translator

        ics = plan_calendar(
            items,
            tr=translator(locale),
            cervix=cbp if cervix is None else cervix,
            stamp=now(),
        )
        click.echo(ics.decode(), nl=False)
    else:
        _print_table(profile, items)


def _print_messages(items: Sequence[PlanItem], *, cervix: bool, tr: Translator) -> None:
    """Every message of the plan as the patient would read it, one per instant, and the
    length of the longest."""
    from bot import messages

    by_instant: dict[datetime, list[PlanItem]] = {}
    for item in items:
        by_instant.setdefault(item.due, []).append(item)
    longest, sent = 0, 0
    for due, bundle in by_instant.items():
        parts = [(item.kind, item.about) for item in bundle]
        longest = max(longest, len(messages.bundle_text(parts, cervix=cervix, tr=tr)))
        for page in messages.pages(parts, cervix=cervix, tr=tr):
            click.echo(f"── {tr.date(due.date())}, {tr.time(due.time())} ({due:%z}) ──")
            click.echo(messages.bundle_text([parts[i] for i in page], cervix=cervix, tr=tr))
            click.echo()
            sent += 1
    click.echo(
        _(
            "%(count)d instants, %(sent)d messages; the longest bundle has %(length)d "
            "characters (a message has at most %(limit)d)."
        )
        % {
            "count": len(by_instant),
            "sent": sent,
            "length": longest,
            "limit": messages.MESSAGE_LIMIT,
        }
    )


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
    from rich.console import Console
    from rich.table import Table

    from bot.texts import KIND_TITLES

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

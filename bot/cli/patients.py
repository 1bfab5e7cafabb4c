"""Patients from the command line: enroll, import, list, show, invite, pause, resume, courses."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot.cli import common
from bot.cli.plan import EARLY_COURSE_HELP, build, check_locale_option, profile_options
from bot.i18n import gettext as _
from bot.i18n import ngettext
from scheduler.statuses import PatientStatus

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from scheduler import store, teams
    from scheduler.models import Course, Patient


def _expiry(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _local(moment: datetime | None, zone: str) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo(zone)).isoformat(timespec="minutes") if moment else ""


async def _patient(session: AsyncSession, label: str) -> Patient:
    """The patient with ``label``, or a usage error naming it."""
    from scheduler import store

    patient = await store.patient_by_label(session, label=label)
    if patient is None:
        raise click.UsageError(_("No patient has the label %(label)s.") % {"label": label})
    return patient


@click.command("enroll")
@click.option("--label", required=True, help=_("The clinic's pseudonym for the patient."))
@click.option("--locale", required=True, help=_("The patient's language, e.g. de."))
@profile_options
@click.option(
    "--coordinator",
    type=click.IntRange(min=1),
    help=_("Telegram user id of the coordinator who receives this patient's alerts."),
)
@common.team_option(_("The patient's care team. Default: the clinic's only team."))
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
    cervix: bool | None,
    prophylaxis_days: int,
    allow_early_course: bool,
    coordinator: int | None,
    team: str | None,
    qr_path: Path | None,
) -> None:
    """Enrol a patient into a care team and print their one-time invite link."""
    from scheduler import store

    enrolment = store.Enrolment(
        label=store.check_label(label),
        locale=check_locale_option(locale),
        profile=build(courses, timezone, send_time, cbp, prophylaxis_days, allow_early_course),
        coordinator_id=coordinator,
        cervix=cervix,
        team_name=team,
    )
    config = common.settings()
    path = common.new_file(
        qr_path or Path(f"invite-{enrolment.label}.png"), option="--qr", replace=True
    )

    async def enroll() -> tuple[store.Enrolled, str]:
        from bot.invites import invite_link, qr_png

        username = await common.bot_username(config)
        async with common.database(config) as sessions, sessions.begin() as session:
            await store.bootstrap_admins(session, user_ids=config.admin_ids, now=common.now())
            [enrolled] = await store.enroll(
                session,
                enrolments=[enrolment],
                actor=common.CLI_ACTOR,
                now=common.now(),
                late_window=config.late_window,
            )
            link = invite_link(username, enrolled.invite_token)
            common.write_private(path, qr_png(link), replace=True)
        return enrolled, link

    enrolled, link = common.run(enroll())
    click.echo(
        _("Enrolled %(label)s. Invite link (single use, valid until %(expires)s):")
        % {"label": enrolled.label, "expires": _expiry(enrolled.invite_expires_at)}
    )
    click.echo(link)
    click.echo(_("QR code: %(path)s") % {"path": path})


@click.command("import")
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
@common.team_option(
    _("The care team of the rows without a team column. Default: the clinic's only team.")
)
def import_command(
    csv_file: Path, skip_invalid: bool, output: Path | None, team: str | None
) -> None:
    """Enrol patients from a CSV file; every row is checked before anything is stored."""
    from rich.console import Console
    from rich.progress import Progress

    from bot.i18n import available_locales
    from bot.importer import parse_file
    from scheduler import store, teams
    from scheduler.errors import ValidationError

    config = common.settings()
    output = common.new_file(
        output or csv_file.with_name(f"{csv_file.stem}-invites.csv"), option="--output"
    )
    data = csv_file.read_bytes()
    err = Console(stderr=True, highlight=False)
    with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
        task = progress.add_task(_("Checking"), total=data.count(b"\n"))
        parsed = parse_file(
            data, locales=available_locales(), progress=lambda n: progress.advance(task, n)
        )

    async def existing() -> tuple[set[str], dict[str, teams.TeamSummary]]:
        async with common.database(config) as sessions, sessions() as session:
            labels = {summary.label for summary in await store.list_patients(session)}
            return labels, {team.name: team for team in await teams.summaries(session)}

    taken, known = common.run(existing())
    errors = [(e.line, e.label, e.error.render(_)) for e in parsed.errors]
    good: list[store.Enrolment] = []
    for line, enrolment in parsed.enrolments:
        try:
            if enrolment.label in taken:
                raise store.LabelTaken(label=enrolment.label)
            good.append(_in_team(enrolment, enrolment.team_name or team, known))
        except ValidationError as error:
            errors.append((line, enrolment.label, error.render(_)))
    errors.sort()
    for line, _label, message in errors:
        click.echo(_("line %(line)d: %(message)s") % {"line": line, "message": message}, err=True)
    if errors and not skip_invalid:
        raise click.UsageError(
            ngettext(
                "%(count)d invalid row; nothing was imported. Fix it or use --skip-invalid.",
                "%(count)d invalid rows; nothing was imported. Fix them or use --skip-invalid.",
                len(errors),
            )
            % {"count": len(errors)}
        )
    if not good:
        raise click.UsageError(_("No patient to import; nothing was written."))

    async def import_rows() -> list[store.Enrolled]:
        from bot.invites import invite_link

        username = await common.bot_username(config)
        enrolled: list[store.Enrolled] = []
        async with common.database(config) as sessions, sessions.begin() as session:
            with Progress(console=err, transient=True, disable=not err.is_terminal) as progress:
                task = progress.add_task(_("Importing"), total=len(good))
                for start in range(0, len(good), 500):
                    batch = good[start : start + 500]
                    enrolled += await store.enroll(
                        session,
                        enrolments=batch,
                        actor=common.CLI_ACTOR,
                        now=common.now(),
                        late_window=config.late_window,
                    )
                    progress.advance(task, len(batch))
            rows = [
                [row.label, invite_link(username, row.invite_token), row.invite_expires_at]
                for row in enrolled
            ]
            links = _csv([["label", "invite_link", "expires_at"], *rows])
            common.write_private(output, links.encode())
        return enrolled

    enrolled = common.run(import_rows())
    click.echo(
        ngettext(
            "Imported %(count)d patient; invite links in %(path)s (keep this file safe).",
            "Imported %(count)d patients; invite links in %(path)s (keep this file safe).",
            len(enrolled),
        )
        % {"count": len(enrolled), "path": output}
    )
    if errors:
        click.echo(
            ngettext(
                "Skipped %(count)d invalid row.", "Skipped %(count)d invalid rows.", len(errors)
            )
            % {"count": len(errors)}
        )


def _in_team(
    enrolment: store.Enrolment, name: str | None, known: dict[str, teams.TeamSummary]
) -> store.Enrolment:
    """The enrolment with its team (``teams.choose``)."""
    import dataclasses

    from scheduler import teams

    found = teams.choose(name, known)
    return dataclasses.replace(enrolment, team_id=found.id, team_name=None)


def _csv(rows: Sequence[Sequence[object]]) -> str:
    """CSV text; a cell that starts like a formula is quoted so that no spreadsheet runs it."""
    from bot.spreadsheet import safe_cell

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in rows:
        writer.writerow([safe_cell(value) for value in row])
    return buffer.getvalue()


@click.command("patients")
@click.option(
    "--format",
    "output",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
)
@common.team_option(_("Only this care team's patients. Default: every team."))
def patients_command(output: str, team: str | None) -> None:
    """List patients with their status, next reminder and latest acknowledgement."""
    from scheduler import store

    config = common.settings()

    async def fetch() -> list[store.PatientSummary]:
        async with common.database(config) as sessions, sessions() as session:
            return await store.list_patients(session, scope=await common.team_scope(session, team))

    summaries = common.run(fetch())
    rows = [
        {
            "label": p.label,
            "status": p.status,
            "timezone": p.timezone,
            "next_due": _local(p.next_due, p.timezone) or None,
            "last_acknowledged": _local(p.last_acknowledged, p.timezone) or None,
        }
        for p in summaries
    ]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if output == "csv":
        columns = ["label", "status", "timezone", "next_due", "last_acknowledged"]
        click.echo(_csv([columns, *[[row[c] or "" for c in columns] for row in rows]]), nl=False)
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=_("Patients: %(count)d") % {"count": len(summaries)}, title_justify="left")
    for column in (_("Label"), _("Status"), _("Next reminder"), _("Last acknowledged")):
        table.add_column(column)
    for row in rows:
        table.add_row(
            str(row["label"]),
            str(row["status"]),
            str(row["next_due"] or ""),
            str(row["last_acknowledged"] or ""),
        )
    Console(highlight=False).print(table)


@click.command("patient")
@common.label_argument
@click.option(
    "--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def patient_command(label: str, output: str) -> None:
    """One patient: settings, courses, adherence and next reminders."""
    from scheduler import coordination

    config = common.settings()

    async def fetch() -> coordination.PatientDetail:
        async with common.database(config) as sessions, sessions() as session:
            detail = await coordination.patient_detail(session, label=label, upcoming=5)
        if detail is None:
            raise click.UsageError(_("No patient has the label %(label)s.") % {"label": label})
        return detail

    detail = common.run(fetch())
    found = detail.patient
    facts: dict[str, Any] = {
        "label": found.label,
        "status": found.status,
        "locale": found.locale,
        "timezone": found.timezone,
        "send_time": found.send_time.strftime("%H:%M"),
        "cbp": found.cbp,
        "cervix": found.cervix,
        "prophylaxis_days": found.prophylaxis_days,
        "coordinator": found.coordinator_id,
        "courses": [
            {"number": c.number, "start": c.start.isoformat(), "days": c.days}
            for c in found.courses
        ],
        "tests_sent": detail.adherence.sent,
        "tests_confirmed": detail.adherence.done,
        "last_acknowledgement": _local(detail.last_acknowledgement.at, found.timezone)
        if detail.last_acknowledgement
        else None,
        "next_reminders": [
            {"kind": r.kind, "due": _local(r.due_at, found.timezone)} for r in detail.upcoming
        ],
    }
    if output == "json":
        click.echo(json.dumps(facts, indent=2))
        return
    for key, value in facts.items():
        if key == "courses":
            for course in found.courses:
                click.echo(_course_line(course))
        elif key == "next_reminders":
            for reminder in value:
                click.echo(_("next: %(due)s %(kind)s") % dict(reminder))
        else:
            click.echo(f"{key}: {'' if value is None else value}")


def _course_line(course: Course) -> str:
    return ngettext(
        "course %(number)d: %(start)s, %(days)d infusion day",
        "course %(number)d: %(start)s, %(days)d infusion days",
        course.days,
    ) % {"number": course.number, "start": course.start.isoformat(), "days": course.days}


@click.command("invite")
@common.label_argument
@click.option(
    "--qr",
    "qr_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help=_("Where to write the invite QR code (PNG). Default: invite-LABEL.png"),
)
def invite_command(label: str, qr_path: Path | None) -> None:
    """A new invite link for a patient who has not accepted one; the previous link stops working."""
    from scheduler import store

    config = common.settings()
    path = common.new_file(qr_path or Path(f"invite-{label}.png"), option="--qr", replace=True)

    async def invite() -> tuple[str, datetime]:
        from bot.invites import invite_link, qr_png

        username = await common.bot_username(config)
        async with common.database(config) as sessions, sessions.begin() as session:
            found = await _patient(session, label)
            if found.status != PatientStatus.INVITED:
                raise click.UsageError(
                    _(
                        "%(label)s is %(status)s: an invite is only for a patient "
                        "who has not accepted one."
                    )
                    % {"label": label, "status": found.status}
                )
            moment = common.now()
            token = await store.issue_invite(
                session, patient_id=found.id, actor=common.CLI_ACTOR, now=moment
            )
            link = invite_link(username, token)
            common.write_private(path, qr_png(link), replace=True)
        return link, moment + store.INVITE_TTL

    link, expires = common.run(invite())
    click.echo(
        _(
            "New invite for %(label)s (single use, valid until %(expires)s); "
            "the previous link no longer works:"
        )
        % {"label": label, "expires": _expiry(expires)}
    )
    click.echo(link)
    click.echo(_("QR code: %(path)s") % {"path": path})


@click.command("pause")
@common.label_argument
def pause_command(label: str) -> None:
    """Stop sending to an active patient until resumed."""
    from scheduler import store

    config = common.settings()

    async def pause() -> None:
        async with common.database(config) as sessions, sessions.begin() as session:
            found = await _patient(session, label)
            if found.status != PatientStatus.ACTIVE:
                raise click.UsageError(
                    _("%(label)s is %(status)s: only an active patient can be paused.")
                    % {"label": label, "status": found.status}
                )
            await store.pause(
                session, patient_id=found.id, actor=common.CLI_ACTOR, now=common.now()
            )

    common.run(pause())
    click.echo(_("%(label)s is paused: no reminders are sent until resumed.") % {"label": label})


@click.command("resume")
@common.label_argument
def resume_command(label: str) -> None:
    """Send again to a paused or unreachable patient; recent missed reminders go out."""
    from scheduler import store

    config = common.settings()
    resumable = {PatientStatus.PAUSED, PatientStatus.UNREACHABLE}

    async def resume() -> None:
        async with common.database(config) as sessions, sessions.begin() as session:
            found = await _patient(session, label)
            if found.status not in resumable:
                raise click.UsageError(
                    _(
                        "%(label)s is %(status)s: only a paused or unreachable patient "
                        "can be resumed."
                    )
                    % {"label": label, "status": found.status}
                )
            await store.resume(
                session, patient_id=found.id, actor=common.CLI_ACTOR, now=common.now()
            )

    common.run(resume())
    click.echo(
        _("%(label)s is active again; reminders missed while paused are sent if recent.")
        % {"label": label}
    )


@click.group("course")
def course_group() -> None:
    """Treatment courses of enrolled patients."""


@course_group.command("add")
@common.label_argument
@click.argument("course", metavar="DATE[:DAYS]")
@click.option("--allow-early-course", is_flag=True, help=EARLY_COURSE_HELP)
def course_add_command(label: str, course: str, allow_early_course: bool) -> None:
    """Record a patient's next course; their reminders are re-planned."""
    from bot.cli.plan import early_course_error
    from scheduler import store
    from scheduler.errors import CourseTooEarly
    from scheduler.validation import parse_course

    config = common.settings()

    async def add() -> int:
        async with common.database(config) as sessions, sessions.begin() as session:
            patient = await _patient(session, label)
            start, days = parse_course(course, number=len(patient.courses) + 1)
            try:
                added = await store.add_course(
                    session,
                    patient_id=patient.id,
                    start=start,
                    days=days,
                    allow_early=allow_early_course,
                    actor=common.CLI_ACTOR,
                    now=common.now(),
                    late_window=config.late_window,
                )
            except CourseTooEarly as error:
                raise early_course_error(error) from error
            assert added is not None
            return added.number

    number = common.run(add())
    click.echo(
        _("Recorded course %(number)d for %(label)s; reminders re-planned.")
        % {"number": number, "label": label}
    )


@course_group.command("list")
@common.label_argument
def course_list_command(label: str) -> None:
    """A patient's recorded courses, with the end of their monitoring."""
    from scheduler import store

    config = common.settings()

    async def fetch() -> Patient:
        async with common.database(config) as sessions, sessions() as session:
            return await _patient(session, label)

    patient = common.run(fetch())
    for course in patient.courses:
        click.echo(_course_line(course))
    end = store.profile_of(patient).monitoring_end
    click.echo(_("monitoring until %(end)s") % {"end": end.isoformat()})


@click.command("forget")
@common.label_argument
@click.option("--yes", is_flag=True, help=_("Do not ask for confirmation (for scripts)."))
def forget_command(label: str, yes: bool) -> None:
    """Erase a patient: everything stored about them is deleted; only anonymous counts of
    their reminders remain. This cannot be undone."""
    from scheduler import patient_data

    config = common.settings()
    if not yes and not click.confirm(
        _("Erase everything stored about %(label)s? This cannot be undone.") % {"label": label}
    ):
        raise click.UsageError(_("Nothing was erased."))

    async def forget() -> None:
        async with common.database(config) as sessions, sessions.begin() as session:
            found = await _patient(session, label)
            await patient_data.erase(
                session, patient_id=found.id, actor=common.CLI_ACTOR, now=common.now()
            )

    common.run(forget())
    click.echo(_("Erased %(label)s: nothing about them is stored any more.") % {"label": label})

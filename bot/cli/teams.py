"""``remindbot team``: care teams and who is in them."""

from __future__ import annotations

import click

from bot.cli import common
from bot.i18n import gettext as _
from bot.i18n import ngettext
from bot.texts import MEMBERSHIP, team_line


@click.group("team")
def team_group() -> None:
    """Care teams: coordinators and staff see and act on their teams' patients only."""


@team_group.command("add")
@click.argument("name")
def team_add_command(name: str) -> None:
    """Add a care team."""
    from scheduler import teams

    config = common.settings()

    async def add() -> str:
        async with common.database(config) as sessions, sessions.begin() as session:
            team = await teams.create(session, name=name, actor=common.CLI_ACTOR, now=common.now())
            return team.name

    click.echo(_("Team %(team)s added.") % {"team": common.run(add())})


@team_group.command("list")
def team_list_command() -> None:
    """The teams, their coordinators and staff (Telegram user ids) and patient counts."""
    from scheduler import teams

    config = common.settings()

    async def fetch() -> list[teams.TeamSummary]:
        async with common.database(config) as sessions, sessions() as session:
            return await teams.summaries(session)

    for team in common.run(fetch()):
        click.echo(team_line(team, ngettext))


@team_group.command("assign")
@click.argument("name")
@click.argument("user_id", type=click.IntRange(min=1))
@click.option("--remove", is_flag=True, help=_("Take the user out of the team instead."))
def team_assign_command(name: str, user_id: int, remove: bool) -> None:
    """Put a coordinator or staff member (Telegram user id) in a team."""
    from scheduler import teams

    config = common.settings()

    async def assign() -> tuple[bool, str]:
        async with common.database(config) as sessions, sessions.begin() as session:
            team = await teams.by_name(session, name=name)
            change = teams.unassign if remove else teams.assign
            changed = await change(
                session, team=team, user_id=user_id, actor=common.CLI_ACTOR, now=common.now()
            )
            return changed, team.name

    changed, team = common.run(assign())
    click.echo(_(MEMBERSHIP[remove, changed]) % {"user": user_id, "team": team})

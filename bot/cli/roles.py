"""``remindbot grant`` and ``revoke``: staff roles."""

from __future__ import annotations

import click

from bot.cli import common
from bot.i18n import gettext as _
from scheduler.statuses import Role

USER_ID = click.IntRange(min=1)


@click.command("grant")
@click.argument("user_id", type=USER_ID, metavar="USER_ID")
@click.argument("role", type=click.Choice([role.value for role in Role]), metavar="ROLE")
def grant_command(user_id: int, role: str) -> None:
    """Give a Telegram user a staff role: ROLE is admin, coordinator or staff.

    USER_ID is the numeric Telegram user id of the person.
    """
    from scheduler import store

    config = common.settings()

    async def grant() -> None:
        async with common.database(config) as sessions, sessions.begin() as session:
            await store.grant(
                session, user_id=user_id, role=Role(role), actor=common.CLI_ACTOR, now=common.now()
            )

    common.run(grant())
    click.echo(_("User %(user)d is now %(role)s.") % {"user": user_id, "role": role})


@click.command("revoke")
@click.argument("user_id", type=USER_ID, metavar="USER_ID")
def revoke_command(user_id: int) -> None:
    """Remove a Telegram user's staff role."""
    from scheduler import store

    config = common.settings()

    async def revoke() -> bool:
        async with common.database(config) as sessions, sessions.begin() as session:
            return await store.revoke(
                session, user_id=user_id, actor=common.CLI_ACTOR, now=common.now()
            )

    if not common.run(revoke()):
        raise click.UsageError(_("User %(user)d has no staff role.") % {"user": user_id})
    click.echo(_("User %(user)d no longer has a staff role.") % {"user": user_id})

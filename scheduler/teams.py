"""Care teams: who belongs to which, which patients a user may see, who is told of alerts.

A clinic has one or more teams. Coordinators and staff belong to one or more of them and
see and act on those teams' patients only; admins see every team. Every patient belongs to
the team that enrolled them, which must have a coordinator, so that an alert always has a
person to reach. Functions work inside the caller's transaction, like ``scheduler.store``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from scheduler.audit import audit
from scheduler.errors import N_, ValidationError
from scheduler.models import Patient, StaffUser, Team, TeamMember
from scheduler.statuses import Role

DEFAULT_TEAM = "default"
_NAME = re.compile(r"[\w.-]{1,64}")


class InvalidTeamName(ValidationError):
    # TRANSLATORS: %(team)s is what was typed as a team name.
    template = N_(
        "%(team)s is not a valid team name. Use 1 to 64 letters, digits, '-', '_' or '.'."
    )


class UnknownTeam(ValidationError):
    template = N_("There is no team %(team)s.")


class TeamExists(ValidationError):
    template = N_("The team %(team)s already exists.")


class NotStaff(ValidationError):
    # TRANSLATORS: %(user)s is a Telegram user id.
    template = N_(
        "User %(user)s has no coordinator or staff role. Grant one first; admins are in "
        "every team anyway."
    )


class NoCoordinator(ValidationError):
    template = N_(
        "The team %(team)s has no coordinator, so nobody would be told of this patient's "
        "alerts. Assign a coordinator to the team first."
    )


class ChooseTeam(ValidationError):
    # TRANSLATORS: %(teams)s is a list of team names.
    template = N_("Say which team the patient belongs to: %(teams)s.")


class NotYourTeam(ValidationError):
    template = N_("You are not in the team %(team)s.")


def check_name(name: str) -> str:
    value = name.strip()
    if not _NAME.fullmatch(value):
        raise InvalidTeamName(team=value or '""')
    return value


@dataclass(frozen=True, slots=True)
class Scope:
    """The teams whose patients someone may see: ``None`` for every team."""

    team_ids: frozenset[int] | None

    def allows(self, team_id: int) -> bool:
        return self.team_ids is None or team_id in self.team_ids

    def condition(self, column: InstrumentedAttribute[int]) -> ColumnElement[bool] | None:
        """A WHERE clause on a patient's team column, or None when every team is allowed."""
        return None if self.team_ids is None else column.in_(sorted(self.team_ids))


EVERY_TEAM = Scope(None)


async def scope_of(session: AsyncSession, *, user_id: int) -> Scope:
    """What the user may see: every team for an admin, their teams for anyone else (none
    without a role)."""
    role = await session.scalar(select(StaffUser.role).where(StaffUser.telegram_user_id == user_id))
    if role == Role.ADMIN:
        return EVERY_TEAM
    if role is None:
        return Scope(frozenset())
    found = await session.scalars(select(TeamMember.team_id).where(TeamMember.user_id == user_id))
    return Scope(frozenset(found))


async def by_name(session: AsyncSession, *, name: str) -> Team:
    team = await session.scalar(select(Team).where(Team.name == name.strip()))
    if team is None:
        raise UnknownTeam(team=name.strip() or '""')
    return team


async def create(session: AsyncSession, *, name: str, actor: str, now: datetime) -> Team:
    name = check_name(name)
    if await session.scalar(select(Team.id).where(Team.name == name)) is not None:
        raise TeamExists(team=name)
    team = Team(name=name, created_at=now)
    session.add(team)
    await session.flush()
    audit(session, actor=actor, action="team.add", target=f"team:{team.id}", now=now)
    return team


async def assign(
    session: AsyncSession, *, team: Team, user_id: int, actor: str, now: datetime
) -> bool:
    """Put a coordinator or staff member in ``team``; False if they were in it already."""
    role = await session.scalar(select(StaffUser.role).where(StaffUser.telegram_user_id == user_id))
    if role not in (Role.COORDINATOR, Role.STAFF):
        raise NotStaff(user=user_id)
    if await session.get(TeamMember, (team.id, user_id)) is not None:
        return False
    session.add(TeamMember(team_id=team.id, user_id=user_id))
    audit(session, actor=actor, action="team.assign", target=f"user:{user_id}", now=now,
          detail=f"team:{team.id}")  # fmt: skip
    return True


async def unassign(
    session: AsyncSession, *, team: Team, user_id: int, actor: str, now: datetime
) -> bool:
    """Take someone out of ``team``; False if they were not in it."""
    result = await session.execute(
        delete(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == user_id)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    audit(session, actor=actor, action="team.unassign", target=f"user:{user_id}", now=now,
          detail=f"team:{team.id}")  # fmt: skip
    return True


@dataclass(frozen=True, slots=True)
class TeamSummary:
    id: int
    name: str
    coordinators: tuple[int, ...]
    staff: tuple[int, ...]
    patients: int


async def summaries(session: AsyncSession, *, scope: Scope = EVERY_TEAM) -> list[TeamSummary]:
    """The teams in ``scope`` by name, with their members and how many patients they have."""
    query = select(Team.id, Team.name).order_by(Team.name)
    condition = scope.condition(Team.id)
    if condition is not None:
        query = query.where(condition)
    teams = (await session.execute(query)).all()
    members = (
        await session.execute(
            select(TeamMember.team_id, TeamMember.user_id, StaffUser.role)
            .join(StaffUser, StaffUser.telegram_user_id == TeamMember.user_id)
            .order_by(TeamMember.user_id)
        )
    ).all()
    counts = dict(
        (
            await session.execute(select(Patient.team_id, func.count()).group_by(Patient.team_id))
        ).all()
    )
    return [
        TeamSummary(
            team_id,
            name,
            tuple(u for t, u, role in members if t == team_id and role == Role.COORDINATOR),
            tuple(u for t, u, role in members if t == team_id and role == Role.STAFF),
            int(counts.get(team_id, 0)),
        )
        for team_id, name in teams
    ]


async def visible(session: AsyncSession, *, scope: Scope = EVERY_TEAM) -> list[Team]:
    """The teams in ``scope`` by name (one small read: no members, no patient counts)."""
    query = select(Team).order_by(Team.name)
    condition = scope.condition(Team.id)
    if condition is not None:
        query = query.where(condition)
    return list(await session.scalars(query))


async def teams_of(session: AsyncSession, *, user_id: int) -> list[Team]:
    """The teams a user may enrol into: every team for an admin, else their own."""
    return await visible(session, scope=await scope_of(session, user_id=user_id))


async def coordinators(session: AsyncSession, *, team_id: int) -> list[int]:
    """The Telegram ids of the team's coordinators, in id order."""
    return list(
        await session.scalars(
            select(TeamMember.user_id)
            .join(StaffUser, StaffUser.telegram_user_id == TeamMember.user_id)
            .where(TeamMember.team_id == team_id, StaffUser.role == Role.COORDINATOR)
            .order_by(TeamMember.user_id)
        )
    )


async def own_coordinator(
    session: AsyncSession, *, team_id: int, coordinator_id: int | None
) -> int | None:
    """The patient's own coordinator while they may still act for the team: a coordinator
    in it, or an admin."""
    if coordinator_id is None:
        return None
    role = await session.scalar(
        select(StaffUser.role).where(StaffUser.telegram_user_id == coordinator_id)
    )
    if role == Role.ADMIN:
        return coordinator_id
    member = await session.get(TeamMember, (team_id, coordinator_id))
    return coordinator_id if role == Role.COORDINATOR and member is not None else None


def choose(name: str | None, known: Mapping[str, TeamSummary]) -> TeamSummary:
    """The team a new patient goes into, among ``known`` (by name): the one named, or the
    only one there is. It must have a coordinator (``NoCoordinator``)."""
    if name is None:
        if len(known) != 1:
            raise ChooseTeam(teams=", ".join(sorted(known)) or "-")
        [found] = known.values()
    elif (named := known.get(name.strip())) is not None:
        found = named
    else:
        raise UnknownTeam(team=name.strip() or '""')
    if not found.coordinators:
        raise NoCoordinator(team=found.name)
    return found


async def enrolment_team(
    session: AsyncSession, *, name: str | None, scope: Scope = EVERY_TEAM
) -> TeamSummary:
    """``choose`` among the teams in ``scope``; a team that exists outside it is
    ``NotYourTeam``."""
    known = {team.name: team for team in await summaries(session, scope=scope)}
    wanted = name.strip() if name is not None else None
    if wanted is not None and wanted not in known and scope.team_ids is not None:
        exists = await session.scalar(select(Team.id).where(Team.name == wanted))
        if exists is not None:
            raise NotYourTeam(team=wanted)
    return choose(name, known)


async def check_reachable(session: AsyncSession, *, team: Team) -> None:
    if not await coordinators(session, team_id=team.id):
        raise NoCoordinator(team=team.name)


async def ids_by_name(session: AsyncSession, *, names: Sequence[str]) -> dict[str, Team]:
    """The teams with these names (for an import); unknown names are left out."""
    found = await session.scalars(select(Team).where(Team.name.in_(sorted(set(names)))))
    return {team.name: team for team in found}


async def locales(session: AsyncSession, *, user_ids: Sequence[int]) -> dict[int, str | None]:
    """The language each staff member's alerts are written in (None: the bot's default)."""
    rows = await session.execute(
        select(StaffUser.telegram_user_id, StaffUser.locale).where(
            StaffUser.telegram_user_id.in_(sorted(set(user_ids)))
        )
    )
    return {user_id: locale for user_id, locale in rows.all()}


async def join_only_team(session: AsyncSession, *, user_id: int) -> None:
    """Put the user in the clinic's team when there is exactly one, and they are in none."""
    found = list(await session.scalars(select(Team.id).limit(2)))
    if len(found) != 1:
        return
    if await session.scalar(select(TeamMember.team_id).where(TeamMember.user_id == user_id)):
        return
    session.add(TeamMember(team_id=found[0], user_id=user_id))

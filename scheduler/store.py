"""Data access: patients and their materialised plans, invites, consent, roles, audit.

Functions take keyword-only arguments and work inside the caller's transaction
(``async with sessions.begin() as session``), so an operation that fails changes nothing.
Lookups return ``None`` for "not found"; the edge turns that into a message.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import Table, delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from scheduler import alerts, bulk, outbox, planner, teams, web_access
from scheduler.audit import audit as audit  # re-exported: handlers call store.audit
from scheduler.errors import N_, ValidationError
from scheduler.models import (
    Acknowledgement,
    AuditEvent,
    Consent,
    Course,
    Invite,
    Patient,
    Reminder,
    StaffUser,
    Team,
)
from scheduler.planner import PlanItem, Profile, plan
from scheduler.policies import skipped_when_planned
from scheduler.sending import Purpose
from scheduler.statuses import UNSENT, PatientStatus, ReminderStatus, Role
from scheduler.validation import next_course

INVITE_TTL = timedelta(days=14)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# Keeps each multi-row INSERT well under SQLite's and asyncpg's bound-parameter limits.
_CHUNK = 2000
# Plans are made and written this many patients at a time (about 9,000 reminders).
_PATIENTS_PER_BATCH = 100
# SQLite's page cache while enrolling more patients than that (``bulk.page_cache``).
_PAGE_CACHE_MIB = 256
# Bulk inserts go through the tables (Core), not the ORM's unit of work.
_PATIENTS = cast(Table, Patient.__table__)
_COURSES = cast(Table, Course.__table__)
_INVITES = cast(Table, Invite.__table__)
_AUDIT = cast(Table, AuditEvent.__table__)


class LabelTaken(ValidationError):
    template = N_("The label %(label)s is already in use. Choose another pseudonym.")


class DuplicateLabel(ValidationError):
    template = N_("The label %(label)s appears more than once.")


class InvalidLabel(ValidationError):
    # TRANSLATORS: the label is the clinic's pseudonym for a patient, never a name.
    template = N_(
        "%(label)s is not a valid label. Use 1 to 64 letters, digits, '-', '_' or '.'; "
        "never the patient's name."
    )


_LABEL = re.compile(r"[\w.-]{1,64}")


def check_label(label: str) -> str:
    value = label.strip()
    if not _LABEL.fullmatch(value):
        raise InvalidLabel(label=value or '""')
    return value


@dataclass(frozen=True, slots=True)
class Enrolment:
    """A validated new patient: see ``scheduler.validation.build_profile``."""

    label: str
    locale: str
    profile: Profile
    coordinator_id: int | None = None
    # Whether the yearly reminder carries the cervical screening line; None: the CBP answer.
    cervix: bool | None = None
    # The care team (``scheduler.teams``), by id or by name; neither: the clinic's only team.
    team_id: int | None = None
    team_name: str | None = None

    @property
    def has_cervix(self) -> bool:
        return self.profile.cbp if self.cervix is None else self.cervix


@dataclass(frozen=True, slots=True)
class Enrolled:
    patient_id: int
    label: str
    invite_token: str
    invite_expires_at: datetime


# --- audit -----------------------------------------------------------------------------


def _patient_target(patient_id: int) -> str:
    return f"patient:{patient_id}"


# --- plans -----------------------------------------------------------------------------


def profile_of(patient: Patient) -> Profile:
    """The planner's view of a stored patient (courses must be loaded)."""
    return Profile(
        courses=tuple(planner.Course(course.start, course.days) for course in patient.courses),
        timezone=ZoneInfo(patient.timezone),
        send_time=patient.send_time,
        cbp=patient.cbp,
        prophylaxis_days=patient.prophylaxis_days,
    )


async def enroll(
    session: AsyncSession,
    *,
    enrolments: Sequence[Enrolment],
    actor: str,
    now: datetime,
    late_window: timedelta,
    invite_ttl: timedelta = INVITE_TTL,
) -> list[Enrolled]:
    """Store new patients with their courses, materialised plans and invites.

    Items already in the past are stored as skipped (see
    ``policies.skipped_when_planned``). Nothing is queued until the patient consents.
    Every patient's team must have a coordinator (``teams.NoCoordinator``): an alert must
    always reach someone. Courses, plans, history, invites and audit rows go in by
    ``bulk.insert_rows`` (COPY on PostgreSQL): an import enrols thousands at once.
    """
    labels = [enrolment.label for enrolment in enrolments]
    team_ids = await _teams_of(session, enrolments)
    seen: set[str] = set()
    for label in labels:
        if label in seen:
            raise DuplicateLabel(label=label)
        seen.add(label)
    for start in range(0, len(labels), _CHUNK):
        taken = await session.scalar(
            select(Patient.label).where(Patient.label.in_(labels[start : start + _CHUNK])).limit(1)
        )
        if taken is not None:
            raise LabelTaken(label=taken)

    for start in range(0, len(enrolments), _CHUNK):
        await session.execute(
            insert(_PATIENTS),
            [
                {
                    "label": enrolment.label,
                    "locale": enrolment.locale,
                    "timezone": enrolment.profile.timezone.key,
                    "send_time": enrolment.profile.send_time,
                    "cbp": enrolment.profile.cbp,
                    "cervix": enrolment.has_cervix,
                    "prophylaxis_days": enrolment.profile.prophylaxis_days,
                    "status": PatientStatus.INVITED,
                    "coordinator_id": enrolment.coordinator_id,
                    "team_id": team_id,
                    "plan_version": 1,
                    "created_at": now,
                }
                for enrolment, team_id in zip(
                    enrolments[start : start + _CHUNK],
                    team_ids[start : start + _CHUNK],
                    strict=True,
                )
            ],
        )
    ids: dict[str, int] = {}
    for start in range(0, len(labels), _CHUNK):
        found = await session.execute(
            select(Patient.label, Patient.id).where(
                Patient.label.in_(labels[start : start + _CHUNK])
            )
        )
        ids.update((label, pid) for label, pid in found.all() if label is not None)
    patient_ids = [ids[label] for label in labels]

    many = len(enrolments) > _PATIENTS_PER_BATCH
    async with bulk.page_cache(session, mebibytes=_PAGE_CACHE_MIB) if many else nullcontext():
        courses = [
            (pid, number, course.start, course.days)
            for pid, enrolment in zip(patient_ids, enrolments, strict=True)
            for number, course in enumerate(enrolment.profile.courses, start=1)
        ]
        await bulk.insert_rows(
            session, _COURSES, ("patient_id", "number", "start", "days"), courses
        )
        for start in range(0, len(enrolments), _PATIENTS_PER_BATCH):
            await _add_plans(
                session,
                patient_ids[start : start + _PATIENTS_PER_BATCH],
                enrolments[start : start + _PATIENTS_PER_BATCH],
                now=now,
                late_window=late_window,
            )
        enrolled: list[Enrolled] = []
        invites: list[tuple[Any, ...]] = []
        for pid, enrolment in zip(patient_ids, enrolments, strict=True):
            token = new_token()
            invites.append(tuple(_invite_row(pid, token, now=now, ttl=invite_ttl).values()))
            enrolled.append(Enrolled(pid, enrolment.label, token, now + invite_ttl))
        await bulk.insert_rows(session, _INVITES, _INVITE_COLUMNS, invites)
        audits = [(now, actor, "enroll", _patient_target(pid)) for pid in patient_ids]
        await bulk.insert_rows(session, _AUDIT, ("at", "actor", "action", "target"), audits)
    return enrolled


async def _add_plans(
    session: AsyncSession,
    patient_ids: Sequence[int],
    enrolments: Sequence[Enrolment],
    *,
    now: datetime,
    late_window: timedelta,
) -> None:
    """The materialised plans of new patients (version 1), past items skipped."""
    plans = []
    for pid, enrolment in zip(patient_ids, enrolments, strict=True):
        items = plan(enrolment.profile)
        plans.append((pid, items, skipped_when_planned(items, now=now, late_window=late_window)))
    await outbox.add_plans(session, plans, version=1, now=now)


async def _teams_of(session: AsyncSession, enrolments: Sequence[Enrolment]) -> list[int]:
    """Each enrolment's team (the only team where none is named), checked to have a
    coordinator."""
    named = await teams.ids_by_name(
        session, names=[e.team_name for e in enrolments if e.team_name and e.team_id is None]
    )
    only: int | None = None
    if any(e.team_id is None and e.team_name is None for e in enrolments):
        only = (await teams.enrolment_team(session, name=None)).id
    ids: list[int | None] = []
    for enrolment in enrolments:
        if enrolment.team_id is not None:
            ids.append(enrolment.team_id)
        elif enrolment.team_name is not None:
            if enrolment.team_name not in named:
                raise teams.UnknownTeam(team=enrolment.team_name)
            ids.append(named[enrolment.team_name].id)
        else:
            ids.append(only)
    for team_id in set(ids):
        team = await session.get(Team, team_id)
        if team is None:
            raise teams.UnknownTeam(team=str(team_id))
        await teams.check_reachable(session, team=team)
    return [team_id for team_id in ids if team_id is not None]


async def replan(
    session: AsyncSession, *, patient: Patient, now: datetime, late_window: timedelta
) -> None:
    """Bring a patient's stored reminders in line with their current courses and preferences.

    Unsent items move to their new time; unsent items no longer in the plan are cancelled;
    new items are inserted (past ones skipped). Items already sent, and their history, are
    never touched. The caller holds the patient row lock (``lock_patient``).
    """
    items = plan(profile_of(patient))
    patient.plan_version += 1
    version = patient.plan_version
    existing = {
        (reminder.kind, reminder.occurrence): reminder
        for reminder in await session.scalars(
            select(Reminder).where(Reminder.patient_id == patient.id)
        )
    }
    queued = patient.status == PatientStatus.ACTIVE
    new_items: list[PlanItem] = []
    for item in items:
        reminder = existing.pop((item.kind.value, item.occurrence), None)
        if reminder is None:
            new_items.append(item)
        elif outbox.replannable(reminder):
            reminder.due_at = item.due
            reminder.local_date = item.day
            reminder.about = item.about
            reminder.course = item.course
            reminder.plan_version = version
            if reminder.status == ReminderStatus.PLANNED and queued:
                reminder.ready_at = item.due
    dropped = [r.id for r in existing.values() if outbox.replannable(r)]
    await session.flush()
    await outbox.cancel(session, ids=dropped, now=now, reason=outbox.CANCELLED_REPLANNED)
    skipped = skipped_when_planned(new_items, now=now, late_window=late_window)
    await outbox.add_plans(
        session, [(patient.id, new_items, skipped)], version=version, now=now, queued=queued
    )


async def lock_patient(session: AsyncSession, *, patient_id: int) -> Patient | None:
    """The patient with courses loaded, its row locked until the transaction ends.

    The lock serialises re-plans of one patient across processes on PostgreSQL; SQLite
    serialises all writers anyway.
    """
    patient = await session.scalar(
        select(Patient).where(Patient.id == patient_id).with_for_update()
    )
    if patient is not None:
        await session.refresh(patient, ["courses"])
    return patient


async def patient_by_label(
    session: AsyncSession, *, label: str, scope: teams.Scope = teams.EVERY_TEAM
) -> Patient | None:
    """The patient with ``label``, courses loaded; None also when their team is not in
    ``scope`` (someone of another team learns nothing, not even that the label exists)."""
    patient = await session.scalar(
        select(Patient).where(Patient.label == label).options(selectinload(Patient.courses))
    )
    return patient if patient is not None and scope.allows(patient.team_id) else None


async def patient_by_id(
    session: AsyncSession, *, patient_id: int, scope: teams.Scope = teams.EVERY_TEAM
) -> Patient | None:
    """The patient with this id if their team is in ``scope`` (courses not loaded)."""
    patient = await session.get(Patient, patient_id)
    return patient if patient is not None and scope.allows(patient.team_id) else None


async def patient_by_chat(session: AsyncSession, *, chat_id: int) -> Patient | None:
    """The patient who consented in chat ``chat_id``, courses loaded."""
    return await session.scalar(
        select(Patient).where(Patient.chat_id == chat_id).options(selectinload(Patient.courses))
    )


async def add_course(
    session: AsyncSession,
    *,
    patient_id: int,
    start: date,
    days: int | None,
    allow_early: bool,
    actor: str,
    now: datetime,
    late_window: timedelta,
) -> Course | None:
    """Record the next course and re-plan; the protocol's interval rules apply."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None:
        return None
    recorded = profile_of(patient).courses
    added, _ = next_course(recorded, start, days, allow_early=allow_early)
    course = Course(number=len(recorded) + 1, start=added.start, days=added.days)
    patient.courses.append(course)
    await session.flush()
    await replan(session, patient=patient, now=now, late_window=late_window)
    audit(
        session,
        actor=actor,
        action="course.add",
        target=_patient_target(patient_id),
        now=now,
        detail=f"course {course.number}" + (" (early, confirmed)" if allow_early else ""),
    )
    return course


async def update_preferences(
    session: AsyncSession,
    *,
    patient_id: int,
    actor: str,
    now: datetime,
    late_window: timedelta,
    timezone: ZoneInfo | None = None,
    send_time: time | None = None,
    locale: str | None = None,
) -> Patient | None:
    """Change timezone, send time or language; unsent reminders move with them."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None:
        return None
    changed = []
    if locale is not None and locale != patient.locale:
        patient.locale = locale
        changed.append("locale")
    moved = False
    if timezone is not None and timezone.key != patient.timezone:
        patient.timezone = timezone.key
        changed.append("timezone")
        moved = True
    if send_time is not None and send_time != patient.send_time:
        patient.send_time = send_time
        changed.append("send_time")
        moved = True
    if moved:
        await replan(session, patient=patient, now=now, late_window=late_window)
    if changed:
        audit(
            session,
            actor=actor,
            action="preferences",
            target=_patient_target(patient_id),
            now=now,
            detail=",".join(changed),
        )
    return patient


async def pause(
    session: AsyncSession,
    *,
    patient_id: int,
    actor: str,
    now: datetime,
    status: PatientStatus = PatientStatus.PAUSED,
) -> Patient | None:
    """Stop sending to an active patient (paused by staff, or unreachable) until resumed."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None or patient.status != PatientStatus.ACTIVE:
        return patient
    patient.status = status
    await outbox.unqueue(session, patient_id=patient_id, now=now, reason=f"the patient is {status}")
    audit(
        session,
        actor=actor,
        action=f"patient.{status}",
        target=_patient_target(patient_id),
        now=now,
    )
    return patient


async def mark_unreachable(session: AsyncSession, *, patient_id: int, now: datetime) -> bool:
    """Telegram says the patient blocked the bot: pause them as unreachable until their
    next /start. True if that changed them (the coordinator is to be told)."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None or patient.status != PatientStatus.ACTIVE:
        return False
    await pause(
        session,
        patient_id=patient_id,
        actor="dispatcher",
        now=now,
        status=PatientStatus.UNREACHABLE,
    )
    return True


async def set_cervix(
    session: AsyncSession, *, patient_id: int, cervix: bool, actor: str, now: datetime
) -> Patient | None:
    """Record whether the patient has a cervix (the yearly cervical screening line)."""
    patient = await session.get(Patient, patient_id)
    if patient is None or patient.cervix == cervix:
        return patient
    patient.cervix = cervix
    audit(
        session,
        actor=actor,
        action="patient.cervix",
        target=_patient_target(patient_id),
        now=now,
        detail="yes" if cervix else "no",
    )
    return patient


async def resume(
    session: AsyncSession, *, patient_id: int, actor: str, now: datetime
) -> Patient | None:
    """Send again; reminders missed meanwhile go out if still inside the late window."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None or patient.status not in {PatientStatus.PAUSED, PatientStatus.UNREACHABLE}:
        return patient
    patient.status = PatientStatus.ACTIVE
    await outbox.queue(session, patient_id=patient_id)
    audit(
        session, actor=actor, action="patient.resume", target=_patient_target(patient_id), now=now
    )
    return patient


# --- invites and consent -----------------------------------------------------------------


def new_token() -> str:
    """A random invite token: 43 URL-safe characters."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_INVITE_COLUMNS = ("patient_id", "token_hash", "created_at", "expires_at")


def _invite_row(patient_id: int, token: str, *, now: datetime, ttl: timedelta) -> dict[str, Any]:
    """A new invite's row (keys: ``_INVITE_COLUMNS``, in their order)."""
    return {
        "patient_id": patient_id,
        "token_hash": token_hash(token),
        "created_at": now,
        "expires_at": now + ttl,
    }


async def issue_invite(
    session: AsyncSession,
    *,
    patient_id: int,
    actor: str,
    now: datetime,
    ttl: timedelta = INVITE_TTL,
) -> str:
    """A new one-time invite token for the patient; earlier unused invites stop working."""
    await session.execute(
        update(Invite)
        .where(
            Invite.patient_id == patient_id, Invite.used_at.is_(None), Invite.revoked_at.is_(None)
        )
        .values(revoked_at=now)
    )
    token = new_token()
    await session.execute(insert(Invite), [_invite_row(patient_id, token, now=now, ttl=ttl)])
    audit(session, actor=actor, action="invite.issue", target=_patient_target(patient_id), now=now)
    return token


async def find_invite(session: AsyncSession, *, token: str, now: datetime) -> Invite | None:
    """The invite for ``token`` if it is well-formed, unused, not revoked and not expired."""
    if not _TOKEN.fullmatch(token):
        return None
    invite = await session.scalar(select(Invite).where(Invite.token_hash == token_hash(token)))
    return _usable(invite, now)


async def usable_invite(session: AsyncSession, *, invite_id: int, now: datetime) -> Invite | None:
    """The invite ``invite_id`` (found by its token earlier) if still unused, not revoked
    and not expired."""
    return _usable(await session.get(Invite, invite_id), now)


def _usable(invite: Invite | None, now: datetime) -> Invite | None:
    if invite is None or invite.used_at or invite.revoked_at or invite.expires_at <= now:
        return None
    return invite


async def accept_consent(
    session: AsyncSession,
    *,
    invite: Invite,
    chat_id: int,
    version: int,
    text: str,
    locale: str,
    now: datetime,
) -> Patient:
    """Record consent from the invite's patient: activate them and queue their reminders."""
    patient = await lock_patient(session, patient_id=invite.patient_id)
    assert patient is not None  # invites are deleted with their patient
    invite.used_at = now
    patient.chat_id = chat_id
    patient.status = PatientStatus.ACTIVE
    session.add(
        Consent(
            patient_id=patient.id,
            version=version,
            text_hash=hashlib.sha256(text.encode()).hexdigest(),
            locale=locale,
            accepted_at=now,
        )
    )
    await outbox.queue(session, patient_id=patient.id)
    audit(
        session,
        actor=f"patient:{patient.id}",
        action="consent.accept",
        target=_patient_target(patient.id),
        now=now,
        detail=f"version {version}",
    )
    return patient


async def withdraw(
    session: AsyncSession,
    *,
    patient_id: int,
    actor: str,
    now: datetime,
    alert_chat_id: int | None = None,
    by_patient: bool = False,
) -> Patient | None:
    """Withdraw consent: every pending reminder is cancelled at once. When the patient
    withdrew (``/stop``), the care team is told, in this transaction."""
    patient = await lock_patient(session, patient_id=patient_id)
    if patient is None:
        return None
    await outbox.withdraw(session, patient_id=patient_id, now=now)
    if by_patient and patient.status != PatientStatus.WITHDRAWN:
        await outbox.queue_alert(
            session, alerts.withdrawn(patient), alert_chat_id=alert_chat_id, now=now
        )
    if patient.status != PatientStatus.WITHDRAWN:
        patient.status = PatientStatus.WITHDRAWN
        await session.execute(
            update(Consent)
            .where(Consent.patient_id == patient_id, Consent.withdrawn_at.is_(None))
            .values(withdrawn_at=now)
        )
        await session.execute(
            update(Invite)
            .where(
                Invite.patient_id == patient_id,
                Invite.used_at.is_(None),
                Invite.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )
        audit(
            session,
            actor=actor,
            action="consent.withdraw",
            target=_patient_target(patient_id),
            now=now,
        )
    return patient


# --- staff roles -------------------------------------------------------------------------


async def role_of(session: AsyncSession, *, user_id: int) -> Role | None:
    role = await session.scalar(select(StaffUser.role).where(StaffUser.telegram_user_id == user_id))
    return Role(role) if role else None


async def staff_member(session: AsyncSession, *, user_id: int) -> tuple[Role, str | None] | None:
    """A staff member's role and the language their alerts are written in; None without a
    role."""
    row = (
        await session.execute(
            select(StaffUser.role, StaffUser.locale).where(StaffUser.telegram_user_id == user_id)
        )
    ).first()
    return (Role(row.role), row.locale) if row else None


async def grant(
    session: AsyncSession, *, user_id: int, role: Role, actor: str, now: datetime
) -> None:
    """Give a Telegram user a staff role (replacing any role they had). A new coordinator
    or staff member of a clinic with one team joins it; with several, an admin assigns
    them (``teams.assign``)."""
    user = await session.get(StaffUser, user_id)
    if user is None:
        session.add(
            StaffUser(telegram_user_id=user_id, role=role, granted_at=now, granted_by=actor)
        )
    else:
        user.role, user.granted_at, user.granted_by = role, now, actor
    await session.flush()
    if role in (Role.COORDINATOR, Role.STAFF):
        await teams.join_only_team(session, user_id=user_id)
    audit(
        session,
        actor=actor,
        action="role.grant",
        target=f"user:{user_id}",
        now=now,
        detail=role.value,
    )


async def revoke(session: AsyncSession, *, user_id: int, actor: str, now: datetime) -> bool:
    """Remove a user's staff role, and end their web console sessions at once; False if
    they had none."""
    result = await session.execute(delete(StaffUser).where(StaffUser.telegram_user_id == user_id))
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    await web_access.close_sessions(session, user_id=user_id)
    audit(session, actor=actor, action="role.revoke", target=f"user:{user_id}", now=now)
    return True


async def note_language(session: AsyncSession, *, user_id: int, locale: str) -> None:
    """The language a staff member's alerts are written in (written only when it changed)."""
    await session.execute(
        update(StaffUser)
        .where(
            StaffUser.telegram_user_id == user_id,
            or_(StaffUser.locale.is_(None), StaffUser.locale != locale),
        )
        .values(locale=locale)
    )


async def set_staff_timezone(
    session: AsyncSession, *, user_id: int, timezone: ZoneInfo, now: datetime
) -> bool:
    """The zone a staff member reads times in; False if they have no staff role."""
    result = await session.execute(
        update(StaffUser).where(StaffUser.telegram_user_id == user_id).values(timezone=timezone.key)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return False
    audit(
        session,
        actor=f"user:{user_id}",
        action="staff.timezone",
        target=f"user:{user_id}",
        now=now,
        detail=timezone.key,
    )
    return True


async def staff_timezone(session: AsyncSession, *, user_id: int) -> str | None:
    """The zone a staff member chose with /timezone; None if they chose none."""
    return await session.scalar(
        select(StaffUser.timezone).where(StaffUser.telegram_user_id == user_id)
    )


async def bootstrap_admins(
    session: AsyncSession, *, user_ids: Iterable[int], now: datetime
) -> None:
    """Make the configured admin ids admins, leaving everyone else as they are."""
    for user_id in user_ids:
        if await role_of(session, user_id=user_id) is not Role.ADMIN:
            await grant(session, user_id=user_id, role=Role.ADMIN, actor="config", now=now)


# --- listings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientSummary:
    id: int
    label: str
    status: str
    timezone: str
    next_due: datetime | None
    last_acknowledged: datetime | None


async def list_patients(
    session: AsyncSession,
    *,
    scope: teams.Scope = teams.EVERY_TEAM,
    limit: int | None = None,
    offset: int = 0,
) -> list[PatientSummary]:
    """The patients of the teams in ``scope`` by label, with their next unsent reminder and
    their latest acknowledgement."""
    next_due = (
        select(func.min(Reminder.due_at))
        .where(Reminder.patient_id == Patient.id, Reminder.status.in_(UNSENT))
        .correlate(Patient)
        .scalar_subquery()
    )
    last_ack = (
        select(func.max(Acknowledgement.at))
        .join(Reminder, Reminder.id == Acknowledgement.reminder_id)
        .where(Reminder.patient_id == Patient.id)
        .correlate(Patient)
        .scalar_subquery()
    )
    query = (
        select(Patient.id, Patient.label, Patient.status, Patient.timezone, next_due, last_ack)
        .order_by(Patient.label)
        .offset(offset)
        .limit(limit)
    )
    condition = scope.condition(Patient.team_id)
    if condition is not None:
        query = query.where(condition)
    return [
        PatientSummary(pid, str(label), status, zone, due, ack)
        for pid, label, status, zone, due, ack in (await session.execute(query)).all()
    ]


async def upcoming(session: AsyncSession, *, patient_id: int, limit: int) -> list[Reminder]:
    """The patient's next reminders, soonest first: those still to be sent, and those
    postponed to be sent again (at their new time, ``Reminder.next_at``)."""
    again = (Reminder.pending == Purpose.AGAIN.value) & Reminder.status.in_(
        {ReminderStatus.SENT, ReminderStatus.SENDING, ReminderStatus.RETRYING}
    )
    rows = await session.scalars(
        select(Reminder)
        .where(
            Reminder.patient_id == patient_id,
            or_((Reminder.status.in_(UNSENT) & Reminder.first_sent_at.is_(None)), again),
        )
        .order_by(func.coalesce(Reminder.ready_at, Reminder.due_at), Reminder.id)
        .limit(limit)
    )
    return list(rows)

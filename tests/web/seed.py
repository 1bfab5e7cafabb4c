"""A small clinic with a past: two care teams, their staff, and patients whose reminders went
through the outbox's real transitions (claimed, sent, retried, failed, acknowledged,
postponed by follow-ups, cancelled by a withdrawal), with the alerts those raised.

The history is played forward from about 14 months before ``now`` to ``now``, as the
dispatcher and the follow-up sweep would have made it, so the console shows what a clinic's
database holds: recent cancellations and failures for the default 7-day view, a plan with
past and upcoming items, and alerts sent and failed.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import alerts, followups, outbox, store, teams
from scheduler.alerts import AlertKind
from scheduler.db import migrate, session_factory
from scheduler.models import CoordinatorAlert, Reminder, Team
from scheduler.protocol import TEST_KINDS, Kind
from scheduler.sending import Delivery, Outcome, Purpose
from scheduler.statuses import Role
from scheduler.validation import build_profile

Sessions = async_sessionmaker[AsyncSession]
LATE_WINDOW = timedelta(hours=72)
_LEASE = timedelta(minutes=5)
_PROCESS = 1
_ACTOR = "seed"

ADMIN = 1001
NORTH_COORDINATOR = 1900
SOUTH_COORDINATOR = 1901
NORTH_STAFF = 1950


@dataclass(frozen=True, slots=True)
class Person:
    """Someone who signs in to the console."""

    user_id: int
    role: Role
    team: str | None  # None: an admin, in every team


STAFF = {
    "admin": Person(ADMIN, Role.ADMIN, None),
    "coordinator": Person(NORTH_COORDINATOR, Role.COORDINATOR, "north"),
    "south_coordinator": Person(SOUTH_COORDINATOR, Role.COORDINATOR, "south"),
    "staff": Person(NORTH_STAFF, Role.STAFF, "north"),
}


@dataclass(frozen=True, slots=True)
class Spec:
    """A patient of the seeded clinic and what happens to them."""

    label: str
    team: str
    timezone: str
    locale: str
    # Course 1 started this many months and days before ``now`` (so that its monthly tests
    # fall ``days`` before now); course 2 (3 days) a year later if set.
    months_ago: int
    days: int = 0
    second_course: bool = False
    cbp: bool = False
    # What happens to each message: see ``Outcome``; by default it is sent and confirmed.
    script: Callable[[Message], str] = lambda message: "confirm"
    # Days before ``now`` of a one-off event: "withdraw", "pause".
    event: tuple[str, float] | None = None
    consents: bool = True


@dataclass(frozen=True, slots=True)
class Message:
    """A group of claims of one patient at one instant: one Telegram message."""

    claims: tuple[outbox.Claimed, ...]
    at: datetime
    days_ago: float  # before ``now``
    number: int  # 1 for the patient's first message, counting resends

    @property
    def tests(self) -> bool:
        return any(c.kind in TEST_KINDS for c in self.claims)

    @property
    def resend(self) -> bool:
        return any(c.purpose is not Purpose.REMIND for c in self.claims)


def _north_1(message: Message) -> str:
    if message.resend:
        return "sent"
    if 10 < message.days_ago < 14 and message.tests:
        return "symptoms"
    if message.number % 7 == 3 and message.tests:
        return "confirm_late"  # after the follow-ups and the alert
    return "confirm"


def _north_2(message: Message) -> str:
    if message.resend or (message.days_ago < 40 and message.tests):
        return "sent"  # not confirmed: nudged, then the coordinator is alerted
    return "sent" if message.number % 9 == 5 else "confirm"


def _north_3(message: Message) -> str:
    if message.days_ago < 5 and not message.resend:
        return "block"
    return "retry" if message.number == 4 and message.claims[0].attempts == 1 else "confirm"


def _south_1(message: Message) -> str:
    if message.claims[0].attempts == 1 and message.number in (2, 9):
        return "retry"
    return "confirm"


def _south_2(message: Message) -> str:
    if message.days_ago < 3 and not message.resend:
        return "fail"
    return "confirm" if message.number % 3 else "sent"


PATIENTS = (
    Spec("MS-101", "north", "Europe/Berlin", "en", 14, 12, second_course=True, script=_north_1),
    Spec("MS-102", "north", "Europe/Lisbon", "en", 13, 5, cbp=True, script=_north_2),
    Spec("MS-103", "north", "Europe/Berlin", "de", 10, 3, script=_north_3),
    Spec("MS-104", "north", "Europe/London", "en", 7, 9, event=("withdraw", 2.2)),
    Spec("MS-105", "north", "Europe/Berlin", "en", 0, -10, consents=False),
    Spec("MS-106", "north", "Europe/Paris", "fr", 8, 15, event=("pause", 20)),
    Spec("MS-201", "south", "Asia/Riyadh", "ar", 12, 8, cbp=True, script=_south_1),
    Spec("MS-202", "south", "America/New_York", "en", 5, 1, script=_south_2),
)


def months_before(day: date, months: int) -> date:
    month = day.year * 12 + day.month - 1 - months
    return date(month // 12, month % 12 + 1, min(day.day, 28))


class NoSender:
    """The console's tests and screenshots run no dispatcher tick: nothing is ever sent."""

    def pages(self, delivery: Delivery) -> list[Delivery]:
        return [delivery]

    async def send(self, delivery: Delivery) -> Outcome:
        raise AssertionError("the web tests send nothing")

    async def alert(self, alert: object, chat_id: int, locale: str | None = None) -> Outcome:
        raise AssertionError("the web tests send nothing")


@dataclass
class Clinic:
    """What was seeded: ids by name."""

    now: datetime
    teams: dict[str, int]
    patients: dict[str, int]
    staff: dict[str, Person] = field(default_factory=lambda: dict(STAFF))


async def seed(engine: AsyncEngine, *, now: datetime) -> Clinic:
    """Migrate ``engine``'s empty database and fill it (see the module's docstring)."""
    await migrate(engine)
    sessions = session_factory(engine)
    team_ids = await _teams_and_staff(sessions, now=now)
    history = _History(sessions, now=now)
    patients: dict[str, int] = {}
    chat_ids = itertools.count(5001)
    for spec in PATIENTS:
        starts = months_before(now.date() - timedelta(days=spec.days), spec.months_ago)
        enrolled_at = min(now - timedelta(days=1), _at(starts - timedelta(days=7), 8))
        courses: list[tuple[date, int | None]] = [(starts, None)]
        if spec.second_course:
            courses.append((starts + timedelta(days=365), 3))
        profile, _ = build_profile(courses=courses, timezone=spec.timezone, cbp=spec.cbp)
        async with sessions.begin() as session:
            [enrolled] = await store.enroll(
                session,
                enrolments=[
                    store.Enrolment(
                        spec.label,
                        spec.locale,
                        profile,
                        coordinator_id=_coordinator(spec.team),
                        team_id=team_ids[spec.team],
                    )
                ],
                actor=f"user:{_coordinator(spec.team)}",
                now=enrolled_at,
                late_window=LATE_WINDOW,
            )
        patients[spec.label] = enrolled.patient_id
        history.specs[enrolled.patient_id] = spec
        if spec.consents:
            history.at(
                enrolled_at + timedelta(hours=2),
                _consent(enrolled.invite_token, next(chat_ids), spec.locale),
            )
        if spec.event is not None:
            what, days = spec.event
            history.at(now - timedelta(days=days), _EVENTS[what](enrolled.patient_id))
    await history.play()
    return Clinic(now, team_ids, patients)


async def _teams_and_staff(sessions: Sessions, *, now: datetime) -> dict[str, int]:
    setup = now - timedelta(days=500)
    async with sessions.begin() as session:
        # The migrations' default team becomes "north"; "south" is the second team.
        await session.execute(
            update(Team).where(Team.name == teams.DEFAULT_TEAM).values(name="north")
        )
        north = await teams.by_name(session, name="north")
        south = await teams.create(session, name="south", actor=_ACTOR, now=setup)
        found = {"north": north, "south": south}
        for person in STAFF.values():
            await store.grant(
                session, user_id=person.user_id, role=person.role, actor=_ACTOR, now=setup
            )
            if person.team is not None:
                await teams.assign(
                    session,
                    team=found[person.team],
                    user_id=person.user_id,
                    actor=_ACTOR,
                    now=setup,
                )
        return {name: team.id for name, team in found.items()}


def _coordinator(team: str) -> int:
    return NORTH_COORDINATOR if team == "north" else SOUTH_COORDINATOR


def _at(day: date, hour: int) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=UTC)


Step = Callable[[AsyncSession, datetime], Awaitable[None]]


def _consent(token: str, chat_id: int, locale: str) -> Step:
    async def consent(session: AsyncSession, now: datetime) -> None:
        invite = await store.find_invite(session, token=token, now=now)
        assert invite is not None
        await store.accept_consent(
            session,
            invite=invite,
            chat_id=chat_id,
            version=1,
            text="consent",
            locale=locale,
            now=now,
        )

    return consent


def _withdraw(patient_id: int) -> Step:
    async def withdraw(session: AsyncSession, now: datetime) -> None:
        await store.withdraw(
            session, patient_id=patient_id, actor=f"patient:{patient_id}", now=now, by_patient=True
        )

    return withdraw


def _pause(patient_id: int) -> Step:
    async def pause(session: AsyncSession, now: datetime) -> None:
        await store.pause(
            session, patient_id=patient_id, actor=f"user:{NORTH_COORDINATOR}", now=now
        )

    return pause


_EVENTS: dict[str, Callable[[int], Step]] = {"withdraw": _withdraw, "pause": _pause}


class _History:
    """Plays time forward: scripted steps, the dispatcher's claims, the daily sweep."""

    def __init__(self, sessions: Sessions, *, now: datetime) -> None:
        self.sessions = sessions
        self.now = now
        self.specs: dict[int, Spec] = {}
        self.steps: list[tuple[datetime, int, Step]] = []
        self.order = itertools.count()
        self.messages: dict[int, int] = {}
        self.message_ids = itertools.count(100)
        # When the follow-up sweep runs: on the days a test sent earlier reaches a stage.
        self.sweeps: set[datetime] = set()

    def at(self, moment: datetime, step: Step) -> None:
        heapq.heappush(self.steps, (moment, next(self.order), step))

    async def play(self) -> None:
        while True:
            sweep = min(self.sweeps, default=None)
            ready = await self._next_ready()
            moment = min(m for m in (ready, sweep, self._next_step()) if m is not None)
            if moment > self.now:
                break
            if self.steps and self.steps[0][0] <= moment:
                _, _, step = heapq.heappop(self.steps)
                async with self.sessions.begin() as session:
                    await step(session, moment)
            elif moment == sweep:
                self.sweeps.discard(moment)
                await followups.sweep(self.sessions, now=moment)
            else:
                await self._dispatch(moment)

    def _next_step(self) -> datetime | None:
        return self.steps[0][0] if self.steps else None

    async def _next_ready(self) -> datetime | None:
        async with self.sessions() as session:
            reminders = await session.scalar(select(func.min(Reminder.ready_at)))
            alerts_ = await session.scalar(select(func.min(CoordinatorAlert.ready_at)))
        return min((m for m in (reminders, alerts_) if m is not None), default=None)

    async def _dispatch(self, now: datetime) -> None:
        async with self.sessions.begin() as session:
            report = await outbox.claim_due(
                session,
                now=now,
                limit=500,
                process_id=_PROCESS,
                lease=_LEASE,
                late_window=LATE_WINDOW,
                postgres=False,
            )
            groups: dict[int, list[outbox.Claimed]] = {}
            for claim in report.claimed:
                groups.setdefault(claim.patient_id, []).append(claim)
            for patient_id, claims in groups.items():
                self.messages[patient_id] = self.messages.get(patient_id, 0) + 1
                days_ago = (self.now - now).total_seconds() / 86400
                message = Message(tuple(claims), now, days_ago, self.messages[patient_id])
                await self._outcome(session, patient_id, message)
            claimed, _ = await outbox.claim_alerts(
                session,
                now=now,
                limit=100,
                process_id=_PROCESS,
                lease=_LEASE,
                max_attempts=5,
                postgres=False,
            )
            for alert in claimed:
                if alert.alert.kind is AlertKind.DELIVERY_FAILED:
                    await outbox.fail_alert(
                        session,
                        alert,
                        now=now,
                        code=403,
                        detail="Forbidden: bot was blocked by the user",
                    )
                else:
                    await outbox.alert_sent(
                        session, alert, message_id=next(self.message_ids), now=now
                    )

    async def _outcome(self, session: AsyncSession, patient_id: int, message: Message) -> str:
        spec = self.specs[patient_id]
        outcome = spec.script(message)
        claims, now = list(message.claims), message.at
        if outcome == "retry":
            await outbox.retry(
                session,
                claims,
                at=now + timedelta(minutes=2),
                now=now,
                detail="Bad Gateway",
                code=502,
            )
            return outcome
        if outcome in ("fail", "block"):
            blocked = outcome == "block"
            await outbox.fail(
                session,
                claims,
                now=now,
                code=403 if blocked else 400,
                detail="Forbidden: bot was blocked by the user"
                if blocked
                else "Bad Request: chat not found",
            )
            patient = await store.patient_by_id(session, patient_id=patient_id)
            assert patient is not None
            first = claims[0]
            if blocked:
                await store.mark_unreachable(session, patient_id=patient_id, now=now)
            kind = AlertKind.UNREACHABLE if blocked else AlertKind.DELIVERY_FAILED
            alert = alerts.about(patient, kind, first.kind, first.local_date, first.about)
            await outbox.queue_alert(session, alert, alert_chat_id=None, now=now)
            return outcome
        await outbox.mark_sent(session, [(claims, next(self.message_ids))], now=now)
        if message.tests:
            self.sweeps.update(
                _at(now.date() + timedelta(days=days), 11) for days in followups.FOLLOW_UP_DAYS
            )
        chat_id = (await store.patient_by_id(session, patient_id=patient_id)).chat_id  # type: ignore[union-attr]
        assert chat_id is not None
        pressed = claims[0].id
        if outcome == "symptoms":
            self.at(now + timedelta(hours=1), _press(pressed, chat_id, outbox.Action.SYMPTOMS))
        elif outcome.startswith("confirm"):
            kinds = {c.kind for c in claims}
            if kinds & TEST_KINDS:
                action = outbox.Action.DONE
            elif Kind.POST_INFUSION_WARNING in kinds:
                action = outbox.Action.OK
            else:
                return outcome
            later = timedelta(days=11) if outcome == "confirm_late" else timedelta(hours=3)
            if now + later < self.now:
                self.at(now + later, _press(pressed, chat_id, action))
        return outcome


def _press(reminder_id: int, chat_id: int, action: outbox.Action) -> Step:
    async def press(session: AsyncSession, now: datetime) -> None:
        await outbox.acknowledge(
            session,
            reminder_id=reminder_id,
            chat_id=chat_id,
            action=action,
            snoozes_seen=0,
            now=now,
            alert_chat_id=None,
        )

    return press

"""Care teams: who sees which patients, and who is told of each alert (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import alerts, outbox, patient_data, store, teams
from scheduler.alerts import AlertKind, Route
from scheduler.models import AlertEvent, CoordinatorAlert, Patient
from scheduler.protocol import Kind
from scheduler.statuses import AlertStatus, Role
from scheduler.validation import build_profile
from tests.conftest import dump

NOW = datetime(2025, 12, 29, 8, tzinfo=UTC)
WINDOW = timedelta(hours=72)
OWN, OTHER, THIRD, STAFF, ADMIN, CHAT = 501, 502, 503, 601, 701, -100999
Sessions = async_sessionmaker[AsyncSession]


async def grant(session: AsyncSession, user_id: int, role: Role) -> None:
    await store.grant(session, user_id=user_id, role=role, actor="test", now=NOW)


async def enroll(
    session: AsyncSession, label: str, *, team_id: int | None = None, coordinator: int | None = None
) -> Patient:
    profile, _ = build_profile(courses=[(date(2026, 1, 5), None)], timezone="Europe/Berlin")
    [enrolled] = await store.enroll(
        session,
        enrolments=[store.Enrolment(label, "en", profile, coordinator, team_id=team_id)],
        actor="test",
        now=NOW,
        late_window=WINDOW,
    )
    patient = await session.get(Patient, enrolled.patient_id)
    assert patient is not None
    return patient


async def two_teams(sessions: Sessions) -> tuple[int, int]:
    """The default team with coordinators OWN and OTHER and staff STAFF; "north" with THIRD."""
    async with sessions.begin() as session:
        for user in (OWN, OTHER, STAFF):
            await grant(session, user, Role.STAFF if user == STAFF else Role.COORDINATOR)
        await grant(session, ADMIN, Role.ADMIN)
        default = await teams.by_name(session, name=teams.DEFAULT_TEAM)
        north = await teams.create(session, name="north", actor="test", now=NOW)
        await grant(session, THIRD, Role.COORDINATOR)  # two teams now: joins none
        await teams.assign(session, team=north, user_id=THIRD, actor="test", now=NOW)
        return default.id, north.id


async def rows(sessions: Sessions) -> list[tuple[int | None, str, str]]:
    async with sessions() as session:
        found = await session.scalars(select(CoordinatorAlert).order_by(CoordinatorAlert.id))
        return [(row.chat_id, row.route, row.status) for row in found]


def every_kind(patient: Patient) -> list[alerts.Alert]:
    day = date(2026, 2, 5)
    built = [
        alerts.symptoms(patient, Kind.LABS_MONTHLY, day),
        alerts.tests_not_confirmed(patient, Kind.LABS_MONTHLY, day),
        alerts.withdrawn(patient),
    ]
    built += [
        alerts.Alert(kind, patient.id, patient.label, patient.coordinator_id, patient.team_id)
        for kind in (AlertKind.UNREACHABLE, AlertKind.DELIVERY_FAILED, AlertKind.COURSE_DUE)
    ]
    assert {alert.kind for alert in built} == set(AlertKind) - {AlertKind.ERASED}
    return built


async def test_the_migration_puts_everyone_in_one_default_team(sessions: Sessions) -> None:
    async with sessions() as session:
        [summary] = await teams.summaries(session)
    assert (summary.name, summary.patients) == (teams.DEFAULT_TEAM, 0)


async def test_who_sees_which_team(sessions: Sessions) -> None:
    default, north = await two_teams(sessions)
    async with sessions() as session:
        assert await teams.scope_of(session, user_id=ADMIN) == teams.EVERY_TEAM
        assert await teams.scope_of(session, user_id=OWN) == teams.Scope(frozenset({default}))
        assert await teams.scope_of(session, user_id=STAFF) == teams.Scope(frozenset({default}))
        assert await teams.scope_of(session, user_id=THIRD) == teams.Scope(frozenset({north}))
        assert await teams.scope_of(session, user_id=999) == teams.Scope(frozenset())


async def test_enrolment_needs_a_team_with_a_coordinator(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        with pytest.raises(teams.NoCoordinator):
            await enroll(session, "MS-001")
    _default, north = await two_teams(sessions)
    async with sessions.begin() as session:
        with pytest.raises(teams.ChooseTeam):
            await enroll(session, "MS-001")  # two teams: which one?
        empty = await teams.create(session, name="empty", actor="test", now=NOW)
        with pytest.raises(teams.NoCoordinator):
            await enroll(session, "MS-001", team_id=empty.id)
        patient = await enroll(session, "MS-001", team_id=north)
    assert patient.team_id == north
    async with sessions() as session:
        assert (
            await session.scalar(select(Patient.label).where(Patient.team_id == empty.id)) is None
        )


@pytest.mark.parametrize("kind", [k for k in AlertKind if k is not AlertKind.ERASED])
async def test_every_alert_of_a_patient_without_own_coordinator_reaches_the_team(
    sessions: Sessions, kind: AlertKind
) -> None:
    default, _north = await two_teams(sessions)
    async with sessions.begin() as session:
        patient = await enroll(session, "MS-001", team_id=default)  # imported: no coordinator
        [alert] = [a for a in every_kind(patient) if a.kind is kind]
        await outbox.queue_alert(session, alert, alert_chat_id=None, now=NOW)
    assert await rows(sessions) == [(OWN, "team", "queued"), (OTHER, "team", "queued")]


async def test_the_own_coordinator_first_and_the_team_when_they_cannot_act(
    sessions: Sessions,
) -> None:
    default, _ = await two_teams(sessions)
    async with sessions.begin() as session:
        patient = await enroll(session, "MS-001", team_id=default, coordinator=OWN)
        await outbox.queue_alert(session, alerts.withdrawn(patient), alert_chat_id=CHAT, now=NOW)
    assert await rows(sessions) == [(OWN, "own", "queued"), (CHAT, "chat", "queued")]
    async with sessions.begin() as session:
        await store.revoke(session, user_id=OWN, actor="test", now=NOW)
        await outbox.queue_alert(session, alerts.withdrawn(patient), alert_chat_id=None, now=NOW)
    assert (await rows(sessions))[2:] == [(OTHER, "team", "queued")]


async def test_an_alert_the_own_coordinator_never_gets_goes_to_the_team(
    sessions: Sessions,
) -> None:
    default, _ = await two_teams(sessions)
    async with sessions.begin() as session:
        patient = await enroll(session, "MS-001", team_id=default, coordinator=OWN)
        await outbox.queue_alert(session, alerts.withdrawn(patient), alert_chat_id=None, now=NOW)
        [claim], _ = await outbox.claim_alerts(
            session, now=NOW, limit=5, process_id=1, lease=timedelta(minutes=5),
            max_attempts=5, postgres=False,
        )  # fmt: skip
        assert claim.route is Route.OWN
        await outbox.fail_alert(session, claim, now=NOW, detail="blocked", code=403)
    assert await rows(sessions) == [(OWN, "own", "failed"), (OTHER, "team", "queued")]


async def test_an_alert_with_nobody_to_tell_is_recorded(sessions: Sessions) -> None:
    default, _ = await two_teams(sessions)
    async with sessions.begin() as session:
        patient = await enroll(session, "MS-001", team_id=default)
        for user in (OWN, OTHER):  # the team loses its coordinators later
            await store.revoke(session, user_id=user, actor="test", now=NOW)
        assert await outbox.queue_alert(
            session, alerts.symptoms(patient, Kind.LABS_MONTHLY, NOW.date()), alert_chat_id=None,
            now=NOW,
        ) == []  # fmt: skip
        assert await outbox.unrouted_alerts(session) == 1
        assert not await outbox.alert_reached(
            session, patient_id=patient.id, kind=AlertKind.SYMPTOMS, since=NOW
        )
        history = (await session.scalars(select(AlertEvent.detail))).all()
    assert await rows(sessions) == [(None, "team", AlertStatus.FAILED)]
    assert history == [outbox.NO_RECIPIENT]


async def test_alerts_are_claimed_with_their_recipients_language(sessions: Sessions) -> None:
    default, _ = await two_teams(sessions)
    async with sessions.begin() as session:
        await store.note_language(session, user_id=OTHER, locale="de")
        patient = await enroll(session, "MS-001", team_id=default)
        await outbox.queue_alert(session, alerts.withdrawn(patient), alert_chat_id=CHAT, now=NOW)
        claims, _ = await outbox.claim_alerts(
            session, now=NOW, limit=5, process_id=1, lease=timedelta(minutes=5),
            max_attempts=5, postgres=False,
        )  # fmt: skip
    assert {claim.chat_id: claim.locale for claim in claims} == {OWN: None, OTHER: "de", CHAT: None}


async def test_a_new_coordinator_joins_the_only_team(sessions: Sessions) -> None:
    async with sessions.begin() as session:
        await grant(session, OWN, Role.COORDINATOR)
        [summary] = await teams.summaries(session)
    assert summary.coordinators == (OWN,)


# Who erases: the patient (/forget, by their Telegram id), a coordinator (/forget LABEL),
# the operator (remindbot forget).
ERASERS = ("patient", f"user:{OWN}", "cli")


@pytest.mark.parametrize("eraser", ERASERS)
async def test_erasure_leaves_nothing_personal_in_any_table(
    db: AsyncEngine, sessions: Sessions, eraser: str
) -> None:
    """The patient did what patients do (consented, answered, was refused a staff command,
    raised an alert); after erasure a dump of every table names none of it."""
    default, _ = await two_teams(sessions)
    chat, label = 5550123, "ZX-77-erase"
    async with sessions.begin() as session:
        patient = await enroll(session, label, team_id=default, coordinator=OWN)
        keep = await enroll(session, "MS-keep", team_id=default)
        token = await store.issue_invite(session, patient_id=patient.id, actor="t", now=NOW)
        invite = await store.find_invite(session, token=token, now=NOW)
        assert invite is not None
        await store.accept_consent(
            session, invite=invite, chat_id=chat, version=2, text="consent", locale="en", now=NOW
        )
        store.audit(session, actor=f"user:{chat}", action="access.denied", target="grant", now=NOW)
        await outbox.queue_alert(
            session, alerts.symptoms(patient, Kind.LABS_MONTHLY, NOW.date()), alert_chat_id=CHAT,
            now=NOW,
        )  # fmt: skip
    before = await dump(db)
    assert label in before
    assert str(chat) in before
    async with sessions.begin() as session:
        actor = f"user:{chat}" if eraser == "patient" else eraser
        erased = await patient_data.erase(session, patient_id=patient.id, actor=actor, now=NOW)
    assert erased is not None
    assert erased.label == label
    after = await dump(db)
    assert label not in after
    assert str(chat) not in after
    assert "MS-keep" in after  # the other patient is untouched
    async with sessions() as session:
        assert await session.get(Patient, keep.id) is not None
        counts = await patient_data.erased_counts(session)
    assert counts[patient_data.ERASURES] == 1
    assert counts[("labs_monthly", "cancelled")] > 0

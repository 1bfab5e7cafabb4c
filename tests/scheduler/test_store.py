"""Store functions against a real SQLite file and a real PostgreSQL schema."""

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from scheduler import outbox, patient_data, store
from scheduler.errors import CourseTooEarly
from scheduler.models import AuditEvent, Consent, Course, DeliveryEvent, Invite, Patient, Reminder
from scheduler.planner import plan
from scheduler.statuses import PatientStatus, ReminderStatus, Role
from scheduler.validation import build_profile
from tests.conftest import dump, team_with_coordinator

BERLIN = ZoneInfo("Europe/Berlin")
# Enrolled a week before course 1 of the worked example.
NOW = datetime(2025, 12, 29, 8, tzinfo=UTC)
WINDOW = timedelta(hours=72)
Sessions = async_sessionmaker[AsyncSession]


def enrolment(label: str = "MS-001", *, cbp: bool = False, courses: int = 1) -> store.Enrolment:
    specs = [(date(2026, 1, 5), None), (date(2027, 1, 4), 3)][:courses]
    profile, _ = build_profile(courses=specs, timezone="Europe/Berlin", send_time="09:00", cbp=cbp)
    return store.Enrolment(label=label, locale="de", profile=profile, coordinator_id=501)


async def enroll(
    sessions: Sessions, *items: store.Enrolment, now: datetime = NOW
) -> list[store.Enrolled]:
    await team_with_coordinator(sessions, 501)
    async with sessions.begin() as session:
        return await store.enroll(
            session, enrolments=items or [enrolment()], actor="cli", now=now, late_window=WINDOW
        )


async def reminders(session: AsyncSession, patient_id: int) -> dict[tuple[str, str], Reminder]:
    rows = await session.scalars(select(Reminder).where(Reminder.patient_id == patient_id))
    return {(r.kind, r.occurrence): r for r in rows}


async def events(session: AsyncSession, reminder_id: int) -> list[tuple[str, str | None]]:
    rows = await session.execute(
        select(DeliveryEvent.status, DeliveryEvent.detail)
        .where(DeliveryEvent.reminder_id == reminder_id)
        .order_by(DeliveryEvent.id)
    )
    return [(status, detail) for status, detail in rows.all()]


async def consent(sessions: Sessions, token: str, *, chat_id: int = 9001) -> None:
    async with sessions.begin() as session:
        invite = await store.find_invite(session, token=token, now=NOW)
        assert invite is not None
        await store.accept_consent(
            session,
            invite=invite,
            chat_id=chat_id,
            version=1,
            text="consent",
            locale="de",
            now=NOW,
        )


async def test_enrolled_plan_rows_match_the_pure_planner(sessions: Sessions) -> None:
    entry = enrolment(cbp=True, courses=2)
    [enrolled] = await enroll(sessions, entry)
    async with sessions() as session:
        rows = await reminders(session, enrolled.patient_id)
        patient = await session.get(Patient, enrolled.patient_id)
    expected = plan(entry.profile)
    assert len(rows) == len(expected) == 126
    for item in expected:
        row = rows[item.kind.value, item.occurrence]
        assert (row.due_at, row.local_date, row.about, row.course) == (
            item.due,
            item.day,
            item.about,
            item.course,
        )
        assert row.due_at.tzinfo is not None
        assert row.status == ReminderStatus.PLANNED
        assert row.ready_at is None  # nothing is queued before consent
    assert patient is not None
    assert (patient.status, patient.chat_id, patient.label) == ("invited", None, "MS-001")


async def test_past_items_skipped_but_latest_overdue_test_kept(sessions: Sessions) -> None:
    # Enrolled on 2026-04-06 10:00 UTC: the April 5 labs and thyroid tests are 23 h overdue.
    now = datetime(2026, 4, 6, 10, tzinfo=UTC)
    [enrolled] = await enroll(sessions, enrolment(), now=now)
    async with sessions() as session:
        rows = await reminders(session, enrolled.patient_id)
        assert rows["labs_monthly", "m3"].status == ReminderStatus.PLANNED
        assert rows["thyroid_quarterly", "m3"].status == ReminderStatus.PLANNED
        assert rows["labs_monthly", "m2"].status == ReminderStatus.SKIPPED
        assert rows["post_infusion_warning", "c1-d0"].status == ReminderStatus.SKIPPED
        assert rows["labs_monthly", "m4"].status == ReminderStatus.PLANNED
        skipped = rows["labs_monthly", "m2"]
        assert await events(session, skipped.id) == [("skipped", "before enrolment")]
        assert await events(session, rows["labs_monthly", "m3"].id) == []


async def test_many_patients_get_the_rows_one_enrolment_writes(sessions: Sessions) -> None:
    # More patients than one batch of plans (store._PATIENTS_PER_BATCH), some with past
    # items: every reminder, history and audit row is what enrolling them one by one gives.
    now = datetime(2026, 9, 1, 6, tzinfo=UTC)
    first = enrolment("ONE-1", cbp=True, courses=2)
    [single] = await enroll(sessions, first, now=now)
    entries = [enrolment(f"MANY-{n:03d}", cbp=n % 2 == 1, courses=1 + n % 2) for n in range(230)]
    many = await enroll(sessions, *entries, now=now)
    assert [e.label for e in many] == [e.label for e in entries]

    def shape(rows: dict[tuple[str, str], Reminder]) -> set[tuple[object, ...]]:
        columns = [
            *("kind", "occurrence", "local_date", "due_at", "about", "course", "status"),
            *("plan_version", "ready_at", "attempts", "created_at", "changed_at"),
            *("pending", "claim", "followups", "first_sent_at"),
        ]
        return {tuple(getattr(r, column) for column in columns) for r in rows.values()}

    async with sessions() as session:
        one = await reminders(session, single.patient_id)
        twin = await reminders(session, many[1].patient_id)  # cbp, 2 courses, as ``first``
        assert shape(one) == shape(twin)
        assert {r.status for r in one.values()} == {"planned", "skipped"}
        # Ids follow the plan's order (due instant, then kind), patient after patient.
        ids = [
            r.id
            for e in many
            for r in sorted((await reminders(session, e.patient_id)).values(), key=lambda r: r.id)
        ]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
        by_id = sorted(twin.values(), key=lambda r: r.id)
        planned = plan(entries[1].profile)
        assert [(r.kind, r.occurrence) for r in by_id] == [
            (i.kind.value, i.occurrence) for i in planned
        ]
        # One history row per skipped reminder, none for the planned ones.
        history = (
            await session.execute(
                select(DeliveryEvent.reminder_id, DeliveryEvent.status, DeliveryEvent.detail)
                .add_columns(DeliveryEvent.at, DeliveryEvent.repeats)
                .order_by(DeliveryEvent.id)
            )
        ).all()
        skipped = await session.scalars(
            select(Reminder.id).where(Reminder.status == "skipped").order_by(Reminder.id)
        )
        assert [row.reminder_id for row in history] == list(skipped)
        assert {(r.status, r.detail, r.at, r.repeats) for r in history} == {
            ("skipped", "before enrolment", now, 1)
        }
        audits = await session.scalars(
            select(AuditEvent.target).where(AuditEvent.action == "enroll")
        )
        assert sorted(str(target) for target in audits) == sorted(
            f"patient:{e.patient_id}" for e in [single, *many]
        )
        courses = await session.scalar(select(func.count()).select_from(Course))
        invites = await session.scalar(select(func.count()).select_from(Invite))
        assert (courses, invites) == (2 + sum(1 + n % 2 for n in range(230)), 231)


async def test_reminders_after_an_import_get_new_ids(sessions: Sessions) -> None:
    # The import takes its reminder ids itself (the sequence on PostgreSQL, after the
    # largest on SQLite): reminders inserted the usual way afterwards do not collide.
    many = await enroll(sessions, *(enrolment(f"ID-{n}") for n in range(3)))
    async with sessions.begin() as session:
        await store.add_course(
            session,
            patient_id=many[0].patient_id,
            start=date(2027, 1, 4),
            days=None,
            allow_early=False,
            actor="cli",
            now=NOW,
            late_window=WINDOW,
        )
    async with sessions() as session:
        ids = list(await session.scalars(select(Reminder.id)))
        assert len(ids) == len(set(ids))
        imported = await reminders(session, many[2].patient_id)
        assert max(ids) > max(r.id for r in imported.values())


async def test_an_import_that_fails_midway_stores_nothing(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = outbox.add_plans

    async def fail_the_second_batch(*args: Any, **kwargs: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("the disk is full")
        await real(*args, **kwargs)

    monkeypatch.setattr(outbox, "add_plans", fail_the_second_batch)
    await team_with_coordinator(sessions, 501)
    with pytest.raises(RuntimeError, match="the disk is full"):
        async with sessions.begin() as session:
            await store.enroll(
                session,
                enrolments=[enrolment(f"FAIL-{n:03d}") for n in range(150)],
                actor="cli",
                now=NOW,
                late_window=WINDOW,
            )
    assert calls == 2
    async with sessions() as session:
        for table in (Patient, Course, Reminder, DeliveryEvent, Invite):
            assert await session.scalar(select(func.count()).select_from(table)) == 0
        assert (
            await session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "enroll")
            )
            == 0
        )


async def test_labels_must_be_unique(sessions: Sessions) -> None:
    await enroll(sessions, enrolment("MS-001"))
    with pytest.raises(store.LabelTaken, match="MS-001 is already in use"):
        await enroll(sessions, enrolment("MS-002"), enrolment("MS-001"))
    with pytest.raises(store.DuplicateLabel):
        await enroll(sessions, enrolment("MS-003"), enrolment("MS-003"))
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Patient)) == 1


@pytest.mark.parametrize("label", ["", "Jane Doe", "x" * 65, "a/b"])
def test_invalid_labels(label: str) -> None:
    with pytest.raises(store.InvalidLabel):
        store.check_label(label)


async def mark_sent(session: AsyncSession, reminder: Reminder, at: datetime) -> None:
    reminder.status = ReminderStatus.SENT
    reminder.ready_at = None
    session.add(DeliveryEvent(reminder_id=reminder.id, status="sending", at=at))
    session.add(DeliveryEvent(reminder_id=reminder.id, status="sent", at=at, telegram_message_id=7))


async def test_add_course_replans_and_keeps_sent_rows(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions, enrolment(cbp=True))
    await consent(sessions, enrolled.invite_token)
    pid = enrolled.patient_id
    sent_at = datetime(2026, 2, 5, 8, 0, 5, tzinfo=UTC)
    async with sessions.begin() as session:
        rows = await reminders(session, pid)
        await mark_sent(session, rows["labs_monthly", "m1"], sent_at)
    async with sessions() as session:
        before = await reminders(session, pid)
        sent_before = before["labs_monthly", "m1"]
        history = await events(session, sent_before.id)

    later = datetime(2026, 12, 20, tzinfo=UTC)
    async with sessions.begin() as session:
        course = await store.add_course(
            session,
            patient_id=pid,
            start=date(2027, 1, 4),
            days=None,
            allow_early=False,
            actor="cli",
            now=later,
            late_window=WINDOW,
        )
        assert course is not None
        assert (course.number, course.days) == (2, 3)

    async with sessions() as session:
        after = await reminders(session, pid)
        sent_after = after["labs_monthly", "m1"]
        assert (sent_after.status, sent_after.due_at, sent_after.plan_version) == (
            "sent",
            sent_before.due_at,
            1,
        )
        assert await events(session, sent_after.id) == history
        # Monitoring extends to L + 48 months and the end moves in place.
        assert ("labs_monthly", "m60") in after
        assert after["monitoring_end", "end"].local_date == date(2031, 1, 6)
        assert after["monitoring_end", "end"].plan_version == 2
        assert after["monitoring_end", "end"].ready_at == after["monitoring_end", "end"].due_at
        # course_due disappears once course 2 is recorded.
        course_due = after["course_due", "c2"]
        assert course_due.status == ReminderStatus.CANCELLED
        assert await events(session, course_due.id) == [("cancelled", "no longer in the plan")]
        # New course-bound items are queued for the consented patient.
        assert after["post_infusion_warning", "c2-d0"].ready_at is not None
        assert after["contraception_end", "c2"].local_date == date(2027, 5, 6)
        assert (
            await session.scalar(
                select(func.count())
                .select_from(AuditEvent)
                .where(AuditEvent.action == "course.add")
            )
            == 1
        )


async def test_add_course_validates_before_changing_anything(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    with pytest.raises(CourseTooEarly):
        async with sessions.begin() as session:
            await store.add_course(
                session,
                patient_id=enrolled.patient_id,
                start=date(2026, 11, 2),
                days=None,
                allow_early=False,
                actor="cli",
                now=NOW,
                late_window=WINDOW,
            )
    async with sessions() as session:
        assert await session.scalar(select(func.count()).select_from(Course)) == 1
        patient = await session.get(Patient, enrolled.patient_id)
        assert patient is not None
        assert patient.plan_version == 1


async def test_course_after_a_confirmed_early_one(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)

    async def add(start: date, *, early: bool) -> None:
        async with sessions.begin() as session:
            await store.add_course(
                session,
                patient_id=enrolled.patient_id,
                start=start,
                days=None,
                allow_early=early,
                actor="cli",
                now=NOW,
                late_window=WINDOW,
            )

    await add(date(2026, 11, 2), early=True)
    # The early course 2 stays accepted: course 3 is checked against course 2 only.
    await add(date(2027, 11, 2), early=False)
    with pytest.raises(CourseTooEarly, match="Course 4 starts 2028-03-01"):
        await add(date(2028, 3, 1), early=False)


async def test_timezone_change_moves_unsent_only(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    pid = enrolled.patient_id
    async with sessions.begin() as session:
        await mark_sent(session, (await reminders(session, pid))["labs_monthly", "m1"], NOW)
    async with sessions.begin() as session:
        await store.update_preferences(
            session,
            patient_id=pid,
            timezone=ZoneInfo("America/New_York"),
            send_time=time(8),
            actor="patient",
            now=NOW,
            late_window=WINDOW,
        )
    async with sessions() as session:
        rows = await reminders(session, pid)
    assert rows["labs_monthly", "m1"].due_at == datetime(2026, 2, 5, 8, tzinfo=UTC)  # as sent
    assert rows["labs_monthly", "m2"].due_at == datetime(2026, 3, 5, 13, tzinfo=UTC)  # 08:00 EST
    assert rows["labs_monthly", "m3"].due_at == datetime(2026, 4, 5, 12, tzinfo=UTC)  # 08:00 EDT
    assert rows["post_infusion_warning", "c1-d0"].due_at == datetime(2026, 1, 5, 23, tzinfo=UTC)


async def test_pause_and_resume_take_items_out_of_the_queue(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    await consent(sessions, enrolled.invite_token)
    pid = enrolled.patient_id

    async def queued() -> int:
        async with sessions() as session:
            return int(
                await session.scalar(
                    select(func.count())
                    .select_from(Reminder)
                    .where(Reminder.patient_id == pid, Reminder.ready_at.is_not(None))
                )
                or 0
            )

    total = await queued()
    assert total > 50
    async with sessions.begin() as session:
        patient = await store.pause(session, patient_id=pid, actor="coordinator:501", now=NOW)
        assert patient is not None
        assert patient.status == PatientStatus.PAUSED
    assert await queued() == 0
    async with sessions.begin() as session:
        await store.resume(session, patient_id=pid, actor="coordinator:501", now=NOW)
    assert await queued() == total


async def test_withdraw_leaves_nothing_pending(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    await consent(sessions, enrolled.invite_token)
    pid = enrolled.patient_id
    async with sessions.begin() as session:
        await mark_sent(session, (await reminders(session, pid))["labs_monthly", "m1"], NOW)
    async with sessions.begin() as session:
        await store.withdraw(session, patient_id=pid, actor="patient", now=NOW)
    async with sessions() as session:
        rows = await reminders(session, pid)
        statuses = {row.status for row in rows.values()}
        assert statuses == {"cancelled", "sent"}
        assert all(row.ready_at is None for row in rows.values())
        cancelled = rows["labs_monthly", "m2"]
        assert await events(session, cancelled.id) == [("cancelled", "consent withdrawn")]
        withdrawn = await session.scalar(select(Consent.withdrawn_at))
        assert withdrawn == NOW


async def test_erasure_leaves_no_personal_data(sessions: Sessions, db: AsyncEngine) -> None:
    [enrolled] = await enroll(sessions, enrolment("MS-FORGET-7"))
    await consent(sessions, enrolled.invite_token, chat_id=777_000_123)
    async with sessions.begin() as session:
        await store.issue_invite(session, patient_id=enrolled.patient_id, actor="cli", now=NOW)
        planned = len(await reminders(session, enrolled.patient_id))
        await patient_data.erase(session, patient_id=enrolled.patient_id, actor="patient", now=NOW)
    everything = await dump(db)
    assert "MS-FORGET-7" not in everything
    assert "777000123" not in everything
    async with sessions() as session:
        for table in (Patient, Course, Invite, Consent, Reminder, DeliveryEvent):
            assert await session.scalar(select(func.count()).select_from(table)) == 0, table
        counts = await patient_data.erased_counts(session)
    # What stays: how many reminders of each kind ended how, and one erasure.
    assert counts.pop(patient_data.ERASURES) == 1
    assert sum(counts.values()) == planned > 50


class TestInvites:
    async def test_token_shape_and_only_hash_stored(self, sessions: Sessions) -> None:
        [enrolled] = await enroll(sessions)
        token = enrolled.invite_token
        assert 1 <= len(token) <= 64
        assert all(c.isalnum() or c in "-_" for c in token)
        async with sessions() as session:
            stored = (await session.scalars(select(Invite.token_hash))).all()
        assert stored == [store.token_hash(token)]
        assert token not in stored
        assert enrolled.invite_expires_at == NOW + timedelta(days=14)

    async def test_single_use(self, sessions: Sessions) -> None:
        [enrolled] = await enroll(sessions)
        await consent(sessions, enrolled.invite_token)
        async with sessions() as session:
            assert await store.find_invite(session, token=enrolled.invite_token, now=NOW) is None

    async def test_expiry(self, sessions: Sessions) -> None:
        [enrolled] = await enroll(sessions)
        async with sessions() as session:
            token = enrolled.invite_token
            just_before = NOW + timedelta(days=14) - timedelta(seconds=1)
            assert await store.find_invite(session, token=token, now=just_before) is not None
            expired = NOW + timedelta(days=14)
            assert await store.find_invite(session, token=token, now=expired) is None

    async def test_reissue_invalidates_old(self, sessions: Sessions) -> None:
        [enrolled] = await enroll(sessions)
        async with sessions.begin() as session:
            new = await store.issue_invite(
                session, patient_id=enrolled.patient_id, actor="cli", now=NOW
            )
        async with sessions() as session:
            assert await store.find_invite(session, token=enrolled.invite_token, now=NOW) is None
            assert await store.find_invite(session, token=new, now=NOW) is not None

    @pytest.mark.parametrize("token", ["", "x" * 65, "abc def", "../../etc", "ä"])
    async def test_forged_tokens(self, sessions: Sessions, token: str) -> None:
        await enroll(sessions)
        async with sessions() as session:
            assert await store.find_invite(session, token=token, now=NOW) is None


async def test_consent_activates_and_queues(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    await consent(sessions, enrolled.invite_token, chat_id=4242)
    async with sessions() as session:
        patient = await store.patient_by_chat(session, chat_id=4242)
        assert patient is not None
        assert patient.status == PatientStatus.ACTIVE
        rows = await reminders(session, patient.id)
        assert all(r.ready_at == r.due_at for r in rows.values() if r.status == "planned")
        audit_actions = (await session.scalars(select(AuditEvent.action))).all()
        assert "consent.accept" in audit_actions


class TestRoles:
    async def test_grant_revoke_bootstrap(self, sessions: Sessions) -> None:
        async with sessions.begin() as session:
            await store.bootstrap_admins(session, user_ids=[1, 2], now=NOW)
            await store.bootstrap_admins(session, user_ids=[1], now=NOW)  # idempotent
            await store.grant(session, user_id=3, role=Role.COORDINATOR, actor="user:1", now=NOW)
            await store.grant(session, user_id=3, role=Role.STAFF, actor="user:1", now=NOW)
        async with sessions.begin() as session:
            assert await store.role_of(session, user_id=1) is Role.ADMIN
            assert await store.role_of(session, user_id=3) is Role.STAFF
            assert await store.revoke(session, user_id=3, actor="user:1", now=NOW)
            assert not await store.revoke(session, user_id=3, actor="user:1", now=NOW)
            assert await store.role_of(session, user_id=3) is None
        async with sessions() as session:
            actions = (await session.scalars(select(AuditEvent.action))).all()
        assert actions.count("role.grant") == 4
        assert actions.count("role.revoke") == 1


async def test_list_patients(sessions: Sessions) -> None:
    await enroll(sessions, enrolment("B-2"), enrolment("A-1"))
    async with sessions() as session:
        listed = await store.list_patients(session)
    assert [p.label for p in listed] == ["A-1", "B-2"]
    assert listed[0].next_due == datetime(2025, 12, 29, 8, tzinfo=UTC)  # course_upcoming -7d
    assert listed[0].last_acknowledged is None


async def test_unique_reminder_key_is_enforced(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    row = {
        "patient_id": enrolled.patient_id,
        "kind": "labs_monthly",
        "occurrence": "m1",
        "local_date": date(2026, 2, 5),
        "due_at": NOW,
        "status": "planned",
        "plan_version": 1,
        "attempts": 0,
        "created_at": NOW,
    }
    with pytest.raises(IntegrityError):
        async with sessions.begin() as session:
            await session.execute(insert(Reminder), [row])


async def test_concurrent_replans_never_duplicate(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    pid = enrolled.patient_id
    # Course 2 recorded without re-planning yet: both re-plans will want to insert its items.
    async with sessions.begin() as session:
        session.add(Course(patient_id=pid, number=2, start=date(2027, 1, 4), days=3))

    started = asyncio.Event()

    async def replan() -> None:
        async with sessions.begin() as session:
            patient = await store.lock_patient(session, patient_id=pid)
            assert patient is not None
            started.set()
            await asyncio.sleep(0)  # let the other transaction queue up behind the lock
            await store.replan(session, patient=patient, now=NOW, late_window=WINDOW)

    await asyncio.gather(replan(), replan())
    async with sessions() as session:
        keys = (
            await session.execute(
                select(Reminder.kind, Reminder.occurrence).where(Reminder.patient_id == pid)
            )
        ).all()
        version = await session.scalar(select(Patient.plan_version).where(Patient.id == pid))
    assert len(keys) == len(set(keys))
    assert ("post_infusion_warning", "c2-d0") in {tuple(k) for k in keys}
    assert version == 3


async def test_datetimes_come_back_aware_in_utc(sessions: Sessions) -> None:
    [enrolled] = await enroll(sessions)
    async with sessions.begin() as session:
        await session.execute(
            update(Reminder)
            .where(Reminder.patient_id == enrolled.patient_id)
            .values(ready_at=datetime(2026, 1, 1, 10, tzinfo=BERLIN))
        )
    async with sessions() as session:
        ready = await session.scalar(select(Reminder.ready_at).limit(1))
    assert ready == datetime(2026, 1, 1, 9, tzinfo=UTC)
    assert ready is not None
    assert ready.utcoffset() == timedelta(0)

"""Invite link, consent and /help, through the fake Bot API with PTB's real HTTP stack."""

from datetime import timedelta

from sqlalchemy import func, select

from scheduler import store
from scheduler.models import AuditEvent, Consent, Patient, Reminder
from scheduler.statuses import PatientStatus, Role
from tests.bot.conftest import ADMIN, Harness
from tests.fake_bot_api import FakeUser

ANNA = FakeUser(id=4242, first_name="Anna", language_code="de")
MALLORY = FakeUser(id=6666, first_name="Mallory", language_code="en")


async def count(harness: Harness, model: type) -> int:
    async with harness.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_invite_consent_and_welcome(harness: Harness) -> None:
    enrolled = await harness.enroll()
    [consent] = await harness.say(ANNA, f"/start {enrolled.invite_token}")
    assert "Consent version 2" in consent.text
    assert [b.text for b in consent.buttons] == ["I agree", "I do not agree"]

    [welcome] = await harness.press(ANNA, consent, "I agree")
    assert welcome.text.startswith("Thank you. Your reminders start now.")
    assert "They come at 9:00\u202fAM, Europe/Berlin time." in welcome.text
    assert "Coming up:" in welcome.text
    # The first reminders: one week and one day before the course.
    assert "• December 29, 2025, 9:00\u202fAM: Treatment course coming up" in welcome.text
    assert consent.keyboard is None or consent.buttons == []  # buttons removed after the answer

    async with harness.sessions() as session:
        patient = await store.patient_by_chat(session, chat_id=ANNA.id)
        assert patient is not None
        assert (patient.status, patient.label) == (PatientStatus.ACTIVE, "MS-001")
        consent_row = await session.scalar(select(Consent))
        assert consent_row is not None
        assert consent_row.version == 2
        queued = await session.scalar(
            select(func.count()).select_from(Reminder).where(Reminder.ready_at.is_not(None))
        )
        assert queued
    assert await store_invite_unusable(harness, enrolled.invite_token)


async def store_invite_unusable(harness: Harness, token: str) -> bool:
    async with harness.sessions() as session:
        return await store.find_invite(session, token=token, now=harness.clock.now()) is None


async def test_decline_changes_nothing_and_invite_stays_usable(harness: Harness) -> None:
    enrolled = await harness.enroll()
    [consent] = await harness.say(ANNA, f"/start {enrolled.invite_token}")
    [declined] = await harness.press(ANNA, consent, "I do not agree")
    assert "You did not agree" in declined.text
    assert await count(harness, Consent) == 0
    async with harness.sessions() as session:
        patient = await session.scalar(select(Patient))
        assert patient is not None
        assert (patient.status, patient.chat_id) == (PatientStatus.INVITED, None)
    # Opening the link again still works.
    [again] = await harness.say(ANNA, f"/start {enrolled.invite_token}")
    [welcome] = await harness.press(ANNA, again, "I agree")
    assert welcome.text.startswith("Thank you.")


async def test_reused_expired_and_forged_tokens(harness: Harness) -> None:
    first = await harness.enroll("MS-001")
    await harness.consented(ANNA, "MS-002")
    # Once used, a token is refused to anybody else.
    [consent] = await harness.say(MALLORY, f"/start {first.invite_token}")
    await harness.press(MALLORY, consent, "I agree")
    [reused] = await harness.say(FakeUser(id=7000), f"/start {first.invite_token}")
    assert "not valid or has expired" in reused.text

    expiring = await harness.enroll("MS-003")
    harness.clock.advance(timedelta(days=14))
    [expired] = await harness.say(FakeUser(id=7001), f"/start {expiring.invite_token}")
    assert "not valid or has expired" in expired.text

    for forged in ["x" * 43, "../../etc/passwd", "A" * 80]:
        [answer] = await harness.say(FakeUser(id=7002), f"/start {forged}")
        assert "ask your care team" in answer.text
    [bare] = await harness.say(FakeUser(id=7003), "/start")
    assert "ask your care team" in bare.text
    assert await count(harness, Consent) == 2


async def test_consent_press_without_open_invite_is_refused(harness: Harness) -> None:
    enrolled = await harness.enroll()
    await harness.say(ANNA, f"/start {enrolled.invite_token}")
    # Mallory crafts an "accept" press in her own chat: she has no invite open.
    [own] = await harness.say(MALLORY, "/help")
    press = await harness.api.press_button(MALLORY, own, "consent:accept", forge=True)
    await harness.api.wait_for_answer(press)
    refused = await harness.api.wait_for_message(MALLORY.id, count=2)
    assert "ask your care team" in refused.text
    assert await count(harness, Consent) == 0


async def test_help_for_patient_stranger_and_staff(harness: Harness) -> None:
    await harness.consented(ANNA)
    [patient_help] = await harness.say(ANNA, "/help")
    assert "/next" in patient_help.text
    assert "/enroll" not in patient_help.text

    [stranger] = await harness.say(MALLORY, "/help")
    assert "ask your care team" in stranger.text

    [admin] = await harness.say(ADMIN, "/help")
    assert "/grant USER_ID ROLE" in admin.text

    staff = FakeUser(id=2002, first_name="Sam")
    await harness.grant(staff, Role.STAFF)
    [staff_help] = await harness.say(staff, "/help")
    assert "/deliveries" in staff_help.text
    assert "/enroll" not in staff_help.text


async def test_unreachable_patient_comes_back_with_start(harness: Harness) -> None:
    await harness.consented(ANNA)
    async with harness.sessions.begin() as session:
        patient = await store.patient_by_chat(session, chat_id=ANNA.id)
        assert patient is not None
        await store.pause(
            session,
            patient_id=patient.id,
            actor="dispatcher",
            now=harness.clock.now(),
            status=PatientStatus.UNREACHABLE,
        )
    [back] = await harness.say(ANNA, "/start")
    assert back.text == "Welcome back. Your reminders start again."
    async with harness.sessions() as session:
        patient = await store.patient_by_chat(session, chat_id=ANNA.id)
        assert patient is not None
        assert patient.status == PatientStatus.ACTIVE
        actions = (await session.scalars(select(AuditEvent.action))).all()
    assert "patient.resume" in actions

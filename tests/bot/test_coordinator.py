"""The care coordinator's commands, through the fake Bot API with PTB's real HTTP stack."""

from __future__ import annotations

import re
from datetime import date, timedelta

import pytest
from sqlalchemy import ColumnElement, func, select, update

from bot import dialogues
from bot.app import housekeeping
from bot.context import BotContext
from bot.handlers import coordinator
from bot.i18n import available_locales, negotiate, translator
from scheduler import coordination, store
from scheduler import dialogues as scheduler_dialogues
from scheduler.dialogues import Open
from scheduler.models import (
    Acknowledgement,
    AuditEvent,
    Course,
    DeliveryEvent,
    Dialogue,
    Patient,
    Reminder,
)
from scheduler.statuses import PatientStatus, ReminderStatus, Role
from tests.bot.conftest import ADMIN, Harness
from tests.fake_bot_api import FakeUser, SentMessage

CORA = FakeUser(id=3003, first_name="Cora", language_code="en")
COLIN = FakeUser(id=3004, first_name="Colin", language_code="en")
ANNA = FakeUser(id=4242, first_name="Anna", language_code="de")
PETER = FakeUser(id=4343, first_name="Peter", language_code="en")
MALLORY = FakeUser(id=6666, first_name="Mallory", language_code="en")
SAM = FakeUser(id=2002, first_name="Sam", language_code="en")
PNG = b"\x89PNG\r\n\x1a\n"
LINK = re.compile(r"https://t\.me/remindbot_test_bot\?start=([A-Za-z0-9_-]+)")


@pytest.fixture
async def bot(harness: Harness) -> Harness:
    """The harness with CORA as a care coordinator."""
    await harness.grant(CORA, Role.COORDINATOR)
    return harness


async def count(harness: Harness, model: type, *where: ColumnElement[bool]) -> int:
    async with harness.sessions() as session:
        query = select(func.count()).select_from(model).where(*where)
        return int(await session.scalar(query) or 0)


async def under_way(harness: Harness, user: FakeUser) -> list[Open]:
    """The user's conversations in their private chat, as the database holds them."""
    async with harness.sessions() as session:
        return await scheduler_dialogues.under_way(
            session, chat_id=user.id, user_id=user.id, now=harness.clock.now()
        )


async def nothing_answered(harness: Harness, user: FakeUser, words: str) -> None:
    """``words`` are not taken as an answer: at most the answer any text gets (the staff
    help, bot/handlers/fallback.py) comes before the reply to a command sent right behind
    them (the bot handles updates one by one)."""
    before = len(harness.api.messages(user.id))
    await harness.api.send_text(user, words)
    await harness.api.send_text(user, "/patient")
    while not any(
        (m.text or "").startswith("Use /patient LABEL")
        for m in harness.api.messages(user.id)[before:]
    ):
        await harness.api.wait_for_message(user.id, count=len(harness.api.messages(user.id)) + 1)
    *other, reply = harness.api.messages(user.id)[before:]
    assert reply.text is not None
    assert reply.text.startswith("Use /patient LABEL"), reply.text
    assert all((m.text or "").startswith("Staff commands:") for m in other), other


def text(message: SentMessage) -> str:
    assert message.text is not None
    return message.text


def token_of(message: SentMessage) -> str:
    found = LINK.search(text(message))
    assert found is not None, message.text
    return found[1]


async def test_enrolment_asks_again_after_every_bad_answer(bot: Harness) -> None:
    await bot.enroll("MS-TAKEN")
    [ask] = await bot.say(CORA, "/enroll")
    assert ask.text is not None
    assert ask.text.startswith("New enrolment. Nothing is saved until you confirm")
    assert "What is the patient's label?" in ask.text

    [again] = await bot.say(CORA, "John Smith")
    assert "John Smith is not a valid label" in text(again)
    assert text(again).endswith("never the patient's name.")
    [again] = await bot.say(CORA, "MS-TAKEN")
    assert "The label MS-TAKEN is already in use" in text(again)

    [language] = await bot.say(CORA, "MS-100")
    assert "Which language" in text(language)
    assert "English" in [b.text for b in language.buttons]
    assert len(language.buttons) == len(available_locales())
    [again] = await bot.say(CORA, "xx")
    choices = ", ".join(sorted(available_locales()))
    assert f"xx is not an available language. Choose one of: {choices}." in text(again)

    [timezone] = await bot.press(CORA, again, "English")
    assert again.buttons == []  # the answered question loses its buttons
    assert "Which time zone" in text(timezone)
    [again] = await bot.say(CORA, "Mars/Olympus_Mons")
    assert "Mars/Olympus_Mons is not a known time zone" in text(again)

    [send_time] = await bot.press(CORA, again, "Berlin (Europe/Berlin)")
    assert "At what local time" in text(send_time)
    [again] = await bot.say(CORA, "22:30")
    assert "The send time 22:30 is outside 07:00–21:00." in text(again)
    [again] = await bot.say(CORA, "half past eight")
    assert "half past eight is not a time of day" in text(again)

    [cbp] = await bot.say(CORA, "08:30")
    assert "Can the patient become pregnant?" in text(cbp)
    [again] = await bot.say(CORA, "maybe")
    assert text(again).startswith("Please answer Yes or No.")

    [cervix] = await bot.press(CORA, again, "Yes")
    assert "Does the patient have a cervix?" in text(cervix)
    [again] = await bot.say(CORA, "perhaps")
    assert text(again).startswith("Please answer Yes or No.")
    [course1] = await bot.press(CORA, again, "No")
    assert "course 1 start" in text(course1)
    [again] = await bot.say(CORA, "2026-02-30")
    assert "2026-02-30 is not a valid date" in text(again)

    [days1] = await bot.say(CORA, "2026-01-05")
    assert [b.text for b in days1.buttons] == ["5"]
    [again] = await bot.say(CORA, "7")
    assert "Course 1: 7 is not a number of infusion days" in text(again)

    [course2] = await bot.press(CORA, again, "5")
    assert "Is course 2 already planned?" in text(course2)
    [again] = await bot.say(CORA, "2026-01-07")
    assert "before course 1 ends (2026-01-09)" in text(again)
    [early] = await bot.say(CORA, "2026-06-01")
    assert "earlier than 12 months minus 30 days after course 1" in text(early)
    assert [b.text for b in early.buttons] == ["Confirm early course", "Change date"]
    [again] = await bot.say(CORA, "yes please")
    assert text(again).startswith("Please choose one of the buttons")
    [course2] = await bot.press(CORA, again, "Change date")
    assert "Is course 2 already planned?" in text(course2)

    [days2] = await bot.say(CORA, "2027-01-04")
    assert [b.text for b in days2.buttons] == ["3"]
    [again] = await bot.say(CORA, "0")
    assert "Course 2: 0 is not a number of infusion days" in text(again)

    [summary] = await bot.press(CORA, again, "3")
    assert summary.text is not None
    assert summary.text.splitlines() == [
        "Please check the enrolment:",
        "Label: MS-100",
        "Team: default",
        "Language: English (en)",
        "Time zone: Berlin (Europe/Berlin)",
        "Send time: 8:30\u202fAM",
        "Can become pregnant: Yes",
        "Has a cervix: No",
        "Course 1: January 5, 2026, 5 infusion days",
        "Course 2: January 4, 2027, 3 infusion days",
    ]
    assert [b.text for b in summary.buttons] == ["Confirm", "Edit", "Cancel"]
    [again] = await bot.say(CORA, "ok")
    assert text(again).startswith("Please choose one of the buttons")
    assert "Label: MS-100" in text(again)
    assert await count(bot, Patient, Patient.label == "MS-100") == 0

    link, photo = await bot.press(CORA, again, "Confirm", replies=2)
    assert link.text is not None
    assert link.text.startswith("MS-100 is enrolled.")
    # In the coordinator's zone (the default, UTC), not the patient's.
    assert "valid until January 12, 2026, 8:00\u202fAM (UTC)" in link.text
    assert photo.method == "sendPhoto"
    assert photo.caption == "Invite QR code for MS-100."
    assert photo.file is not None
    assert photo.file.data.startswith(PNG)

    async with bot.sessions() as session:
        patient = await store.patient_by_label(session, label="MS-100")
        assert patient is not None
        assert (patient.locale, patient.timezone) == ("en", "Europe/Berlin")
        assert (patient.cbp, patient.cervix) == (True, False)
        assert patient.send_time.isoformat() == "08:30:00"
        assert (patient.status, patient.coordinator_id) == (PatientStatus.INVITED, CORA.id)
        assert [(c.start, c.days) for c in patient.courses] == [
            (date(2026, 1, 5), 5),
            (date(2027, 1, 4), 3),
        ]
        enrolled_by = await session.scalar(
            select(AuditEvent.actor).where(
                AuditEvent.action == "enroll", AuditEvent.target == f"patient:{patient.id}"
            )
        )
    assert enrolled_by == f"user:{CORA.id}"
    assert await count(bot, Reminder, Reminder.patient_id == patient.id) > 100
    assert await count(bot, Dialogue, Dialogue.user_id == CORA.id) == 0  # the answers are gone

    # The link opens the consent flow for the patient.
    [consent] = await bot.say(PETER, f"/start {token_of(link)}")
    [welcome] = await bot.press(PETER, consent, "I agree")
    assert text(welcome).startswith("Thank you.")
    assert "They come at 8:30\u202fAM, Europe/Berlin time." in text(welcome)


async def test_enrolment_time_zone_typed_as_a_city(bot: Harness) -> None:
    await bot.say(CORA, "/enroll")
    await bot.say(CORA, "MS-110")
    [timezone] = await bot.say(CORA, "ru")
    # The patient's language decides the zones offered first; the coordinator reads each
    # by its city in their own language, with the id.
    assert [b.text for b in timezone.buttons] == [
        "Moscow (Europe/Moscow)",
        "Kaliningrad (Europe/Kaliningrad)",
        "Samara (Europe/Samara)",
        "Yekaterinburg (Asia/Yekaterinburg)",
        "Omsk (Asia/Omsk)",
        "Novosibirsk (Asia/Novosibirsk)",
        "Berlin (Europe/Berlin)",
        "London (Europe/London)",
        "Paris (Europe/Paris)",
        "New York (America/New_York)",
    ]
    assert timezone.button("Moscow (Europe/Moscow)").callback_data == "enrol:tz:Europe/Moscow"
    [again] = await bot.say(CORA, "berlni")
    assert text(again).startswith(
        "berlni is not a known time zone. Did you mean Berlin (Europe/Berlin)?"
    )
    [send_time] = await bot.say(CORA, "berlin")
    assert "At what local time" in text(send_time)
    for answer in ["09:00", "no", "no", "2026-01-05", "5"]:
        await bot.say(CORA, answer)
    [course2] = bot.api.messages(CORA.id)[-1:]
    [summary] = await bot.press(CORA, course2, "Skip")
    assert "Time zone: Berlin (Europe/Berlin)" in text(summary).splitlines()
    await bot.press(CORA, summary, "Confirm", replies=2)
    async with bot.sessions() as session:
        patient = await store.patient_by_label(session, label="MS-110")
        assert patient is not None
        assert (patient.locale, patient.timezone) == ("ru", "Europe/Berlin")


async def test_enrolment_time_zone_buttons_are_checked(bot: Harness) -> None:
    await bot.say(CORA, "/enroll")
    await bot.say(CORA, "MS-120")
    [timezone] = await bot.say(CORA, "de")
    assert [b.text for b in timezone.buttons] == [
        "Berlin (Europe/Berlin)",
        "Vienna (Europe/Vienna)",
        "Zurich (Europe/Zurich)",
        "London (Europe/London)",
        "Paris (Europe/Paris)",
        "New York (America/New_York)",
    ]
    # Callback data is not trusted: a forged zone is refused like a typed one.
    before = len(bot.api.messages(CORA.id))
    forged = await bot.api.press_button(CORA, timezone, "enrol:tz:Mars/Base", forge=True)
    await bot.api.wait_for_answer(forged)
    again = await bot.api.wait_for_message(CORA.id, count=before + 1)
    assert text(again).startswith("Mars/Base is not a known time zone.")
    assert "Which time zone" in text(again)
    [send_time] = await bot.press(CORA, again, "Vienna (Europe/Vienna)")
    assert "At what local time" in text(send_time)
    [open_] = await under_way(bot, CORA)
    assert (open_.name, open_.step) == ("enroll", "SEND_TIME")
    assert open_.data["timezone"] == "Europe/Vienna"


async def go_to_summary(harness: Harness, label: str = "MS-200") -> SentMessage:
    """Answer every question with a good answer; the summary."""
    await harness.say(CORA, "/enroll")
    await harness.say(CORA, label)
    for answer in ["en", "Europe/Vienna", "09:00", "no", "yes", "2026-01-05", "5"]:
        await harness.say(CORA, answer)
    [course2] = harness.api.messages(CORA.id)[-1:]
    [summary] = await harness.press(CORA, course2, "Skip")
    return summary


async def test_edit_then_confirm_with_an_early_course(bot: Harness) -> None:
    summary = await go_to_summary(bot)
    assert "Course 2: not planned yet" in text(summary)

    [menu] = await bot.press(CORA, summary, "Edit")
    assert [b.text for b in menu.buttons] == [
        "Label",
        "Language",
        "Time zone",
        "Send time",
        "Pregnancy",
        "Cervix",
        "Courses",
        "Back",
    ]
    await bot.press(CORA, menu, "Send time")
    [summary] = await bot.say(CORA, "10:15")
    assert "Send time: 10:15\u202fAM" in text(summary)

    [menu] = await bot.press(CORA, summary, "Edit")
    [course1] = await bot.press(CORA, menu, "Courses")
    assert "course 1 start" in text(course1)
    await bot.say(CORA, "2026-02-02")
    await bot.say(CORA, "4")
    [early] = await bot.say(CORA, "2026-12-01")
    [days2] = await bot.press(CORA, early, "Confirm early course")
    [summary] = await bot.press(CORA, days2, "3")
    assert summary.text is not None
    assert "Course 1: February 2, 2026, 4 infusion days" in summary.text
    assert "Course 2: December 1, 2026, 3 infusion days" in summary.text
    assert "Course 2 starts early: override confirmed." in summary.text

    # Meanwhile another coordinator enrols a patient under the same label.
    await bot.enroll("MS-200")
    [taken] = await bot.press(CORA, summary, "Confirm")
    assert taken.text is not None
    assert taken.text.startswith("The label MS-200 is already in use.")
    assert "What is the patient's label?" in taken.text
    [summary] = await bot.say(CORA, "MS-201")
    assert "Label: MS-201" in text(summary)
    link, _photo = await bot.press(CORA, summary, "Confirm", replies=2)
    assert text(link).startswith("MS-201 is enrolled.")

    async with bot.sessions() as session:
        patient = await store.patient_by_label(session, label="MS-201")
        assert patient is not None
        assert patient.timezone == "Europe/Vienna"
        assert patient.send_time.isoformat() == "10:15:00"
        assert [(c.start, c.days) for c in patient.courses] == [
            (date(2026, 2, 2), 4),
            (date(2026, 12, 1), 3),
        ]


async def test_cancel_button_and_cancel_command_leave_nothing(bot: Harness) -> None:
    summary = await go_to_summary(bot)
    [cancelled] = await bot.press(CORA, summary, "Cancel")
    assert cancelled.text == "Enrolment cancelled. Nothing was saved."

    await bot.say(CORA, "/enroll")
    [language] = await bot.say(CORA, "MS-300")
    [timezone] = await bot.press(CORA, language, "English")
    [cancelled] = await bot.say(CORA, "/cancel")
    assert cancelled.text == "Enrolment cancelled. Nothing was saved."
    assert await count(bot, Patient) == 0
    assert await under_way(bot, CORA) == []

    # Later answers are not answers any more, and old buttons say so.
    await nothing_answered(bot, CORA, "Europe/Berlin")
    press = await bot.api.press_button(CORA, timezone, text="Berlin (Europe/Berlin)")
    answer = await bot.api.wait_for_answer(press)
    assert answer["text"] == "This button is no longer active."
    assert await count(bot, Patient) == 0


async def test_abandoned_enrolment_times_out(bot: Harness) -> None:
    await bot.say(CORA, "/enroll")
    await bot.say(CORA, "MS-400")
    [open_] = await under_way(bot, CORA)
    assert open_.expires_at == bot.clock.now() + coordinator.ENROL_TIMEOUT
    notices = bot.app.bot_data.conversations
    assert notices is not None

    before = len(bot.api.messages(CORA.id))
    bot.clock.advance(coordinator.ENROL_TIMEOUT - timedelta(seconds=1))
    assert await dialogues.expire(BotContext(bot.app), notices.notices) == 0
    # The housekeeping job (one replica of all, once a minute) ends it.
    bot.clock.advance(timedelta(seconds=1))
    await housekeeping(BotContext(bot.app))
    [ended] = bot.api.messages(CORA.id)[before:]
    assert ended.text == (
        "The enrolment was abandoned after 15 minutes without an answer. "
        "Nothing was saved; send /enroll to start again."
    )
    assert await under_way(bot, CORA) == []
    await nothing_answered(bot, CORA, "en")
    assert await count(bot, Patient) == 0


async def test_course_early_needs_confirmation_from_whoever_was_asked(bot: Harness) -> None:
    await bot.grant(COLIN, Role.COORDINATOR)
    await bot.enroll("MS-001")
    [usage] = await bot.say(CORA, "/course MS-001")
    assert text(usage).startswith("Use /course LABEL DATE [DAYS]")
    [unknown] = await bot.say(CORA, "/course MS-999 2027-01-04")
    assert unknown.text == "No patient with that label."
    [bad] = await bot.say(CORA, "/course MS-001 2027-01-04 9")
    assert text(bad).startswith("Course 2: 9 is not a number")

    [early] = await bot.say(CORA, "/course MS-001 2026-06-01")
    assert "earlier than 12 months minus 30 days after course 1 (2026-01-05)" in text(early)
    assert [b.text for b in early.buttons] == ["Confirm early course", "Cancel"]

    # Colin has no pending request: his forged press changes nothing.
    [own] = await bot.say(COLIN, "/patient")
    press = await bot.api.press_button(COLIN, own, coordinator.COURSE_CONFIRM, forge=True)
    answer = await bot.api.wait_for_answer(press)
    assert answer["text"] == "Nothing to confirm."
    await nothing_answered(bot, COLIN, "hello")
    assert await count(bot, Course) == 1

    [recorded] = await bot.press(CORA, early, "Confirm early course")
    assert recorded.text == (
        "Recorded for MS-001; the reminders are re-planned.\n"
        "Course 2: June 1, 2026, 3 infusion days"
    )
    assert early.buttons == []
    # Pressing it again (a replayed query) does nothing.
    press = await bot.api.press_button(CORA, early, coordinator.COURSE_CONFIRM, forge=True)
    assert (await bot.api.wait_for_answer(press))["text"] == "Nothing to confirm."
    assert await count(bot, Course) == 2
    async with bot.sessions() as session:
        detail = await session.scalar(
            select(AuditEvent.detail).where(AuditEvent.action == "course.add")
        )
    assert detail == "course 2 (early, confirmed)"

    await bot.enroll("MS-002")
    [early] = await bot.say(CORA, "/course MS-002 2026-12-01 2")
    [cancelled] = await bot.press(CORA, early, "Cancel")
    assert cancelled.text == "Nothing was recorded."
    [recorded] = await bot.say(CORA, "/course MS-002 2026-12-06 2")
    assert "Course 2: December 6, 2026, 2 infusion days" in text(recorded)
    assert await count(bot, Course) == 4


async def mark_tests(harness: Harness, label: str, *, sent: int, done: int) -> None:
    """Record the first ``sent`` monthly test reminders as sent, ``done`` of them confirmed."""
    now = harness.clock.now()
    async with harness.sessions.begin() as session:
        patient = await store.patient_by_label(session, label=label)
        assert patient is not None
        reminders = (
            await session.scalars(
                select(Reminder)
                .where(Reminder.patient_id == patient.id, Reminder.kind == "labs_monthly")
                .order_by(Reminder.due_at)
                .limit(sent)
            )
        ).all()
        for number, reminder in enumerate(reminders):
            reminder.status = ReminderStatus.SENT
            session.add(DeliveryEvent(reminder_id=reminder.id, status="sent", at=now))
            if number < done:
                session.add(Acknowledgement(reminder_id=reminder.id, action="done", at=now))
        # A snooze is an acknowledgement, but not a confirmation.
        session.add(
            Acknowledgement(
                reminder_id=reminders[-1].id, action="snooze", at=now - timedelta(hours=1)
            )
        )


async def test_patients_pages_with_status_next_reminder_and_adherence(bot: Harness) -> None:
    await bot.consented(ANNA, "MS-001")
    await mark_tests(bot, "MS-001", sent=2, done=1)
    for number in range(2, 13):
        await bot.enroll(f"MS-{number:03}")

    [listing] = await bot.say(CORA, "/patients")
    assert listing.text is not None
    lines = listing.text.splitlines()
    assert lines[0] == "Patients 1–10 of 12:"
    assert lines[1] == (
        "• MS-001: active; next reminder December 29, 2025, 9:00\u202fAM (Berlin); adherence 50%"
    )
    assert lines[2] == (
        "• MS-002: invited; next reminder December 29, 2025, 9:00\u202fAM (Berlin); adherence no "
        "tests yet"
    )
    assert len(lines) == 11
    assert listing.callback_data == ["patients:page:2"]

    await bot.press(CORA, listing, "▶", replies=0)
    assert listing.text.splitlines()[0] == "Patients 11–12 of 12:"
    assert len(listing.text.splitlines()) == 3
    assert listing.callback_data == ["patients:page:1"]
    await bot.press(CORA, listing, "◀", replies=0)
    assert listing.text.splitlines()[0] == "Patients 1–10 of 12:"

    for forged in ["patients:page:3", "patients:page:0", "patients:page:x", "patients:page:-1"]:
        press = await bot.api.press_button(CORA, listing, forged, forge=True)
        assert (await bot.api.wait_for_answer(press))["text"] == "There is no such page."
    assert listing.text.splitlines()[0] == "Patients 1–10 of 12:"
    assert len(listing.edits) == 2


async def test_patients_when_there_are_none(bot: Harness) -> None:
    [listing] = await bot.say(CORA, "/patients")
    assert listing.text == "No patients yet. Send /enroll to enrol one."


async def test_patient_detail(bot: Harness) -> None:
    await bot.consented(ANNA, "MS-001", cbp=True)
    await mark_tests(bot, "MS-001", sent=2, done=1)
    [detail] = await bot.say(CORA, "/patient MS-001")
    assert detail.text is not None
    lines = detail.text.splitlines()
    assert lines[:10] == [
        "Patient MS-001",
        "Status: active",
        "Language: English (en)",
        "Time zone: Europe/Berlin",
        "Send time: 9:00\u202fAM",
        "Can become pregnant: Yes",
        "Has a cervix: Yes",
        "Course 1: January 5, 2026, 5 infusion days",
        "Adherence: 50% (1 of 2 tests confirmed)",
        "Last acknowledgement: December 29, 2025, 9:00\u202fAM (Berlin), Done "
        "(Monthly blood and urine tests)",
    ]
    assert lines[10] == "Next reminders:"
    assert len(lines) == 11 + coordinator.UPCOMING
    assert lines[11] == "• December 29, 2025, 9:00\u202fAM: Treatment course coming up"

    [unknown] = await bot.say(CORA, "/patient MS-404")
    assert unknown.text == "No patient with that label."
    [usage] = await bot.say(CORA, "/patient")
    assert usage.text == "Use /patient LABEL, for example /patient MS-001."


async def test_pause_and_resume(bot: Harness) -> None:
    await bot.consented(ANNA, "MS-001")
    await bot.enroll("MS-002")

    [refused] = await bot.say(CORA, "/resume MS-001")
    assert refused.text == "MS-001 is active: the reminders are running."
    [paused] = await bot.say(CORA, "/pause MS-001")
    assert paused.text == "MS-001 is paused: no reminders are sent until /resume."
    queued = Reminder.ready_at.is_not(None)
    assert await count(bot, Reminder, queued) == 0
    [again] = await bot.say(CORA, "/pause MS-001")
    assert again.text == "MS-001 is already paused."
    [resumed] = await bot.say(CORA, "/resume MS-001")
    assert text(resumed).startswith("MS-001 is active again")
    assert await count(bot, Reminder, queued) > 0

    [invited] = await bot.say(CORA, "/pause MS-002")
    assert invited.text == "MS-002 has not accepted the invite yet: nothing is sent."
    [invited] = await bot.say(CORA, "/resume MS-002")
    assert text(invited).startswith("MS-002 has not accepted the invite yet")
    [unknown] = await bot.say(CORA, "/pause MS-404")
    assert unknown.text == "No patient with that label."
    [usage] = await bot.say(CORA, "/resume")
    assert usage.text == "Use /resume LABEL, for example /resume MS-001."
    async with bot.sessions() as session:
        actions = (await session.scalars(select(AuditEvent.action))).all()
    assert actions.count("patient.paused") == 1
    assert actions.count("patient.resume") == 1


async def test_invite_again(bot: Harness) -> None:
    first = await bot.enroll("MS-002")
    link, photo = await bot.say(CORA, "/invite MS-002", replies=2)
    assert link.text is not None
    assert link.text.startswith("New invite for MS-002; the previous link no longer works.")
    assert photo.file is not None
    assert photo.file.data.startswith(PNG)

    [old] = await bot.say(PETER, f"/start {first.invite_token}")
    assert "not valid or has expired" in text(old)
    [consent] = await bot.say(PETER, f"/start {token_of(link)}")
    await bot.press(PETER, consent, "I agree")
    [active] = await bot.say(CORA, "/invite MS-002")
    assert active.text == "MS-002 has already accepted an invite; a new one is not needed."

    async with bot.sessions.begin() as session:
        patient = await store.patient_by_label(session, label="MS-002")
        assert patient is not None
        await store.withdraw(session, patient_id=patient.id, actor="test", now=bot.clock.now())
    [withdrawn] = await bot.say(CORA, "/invite MS-002")
    assert withdrawn.text == "MS-002 withdrew consent; nothing was changed."
    [unknown] = await bot.say(CORA, "/invite MS-404")
    assert unknown.text == "No patient with that label."


async def test_invite_expiry_is_in_the_coordinators_zone(bot: Harness) -> None:
    """The patient is in Berlin; the coordinator reads the expiry on their own clock."""
    await bot.enroll("MS-002", timezone="Europe/Berlin")
    [chosen] = await bot.say(CORA, "/timezone america/new_york")
    assert chosen.text == "You now see times in New York (America/New_York) time."
    link, _ = await bot.say(CORA, "/invite MS-002", replies=2)
    # 14 days after December 29, 2025, 8:00 UTC.
    assert "valid until January 12, 2026, 3:00\u202fAM (New York))" in text(link)


async def test_admins_may_too(bot: Harness) -> None:
    [listing] = await bot.say(ADMIN, "/patients")
    assert listing.text == "No patients yet. Send /enroll to enrol one."


COMMANDS = {
    "/enroll": "enroll",
    "/course MS-001 2027-01-04": "course",
    "/patients": "patients",
    "/patient MS-001": "patient",
    "/pause MS-001": "pause",
    "/resume MS-001": "resume",
    "/invite MS-001": "invite",
}


async def test_everyone_else_gets_a_neutral_refusal(bot: Harness) -> None:
    await bot.consented(ANNA, "MS-001")
    await bot.grant(SAM, Role.STAFF)
    for user in (MALLORY, ANNA, SAM):
        # Each reads the refusal in their own Telegram language (Anna's is German).
        not_available = translator(negotiate(user.language_code, default="en")).gettext(
            "This command is not available."
        )
        for command in COMMANDS:
            [refused] = await bot.say(user, command)
            assert refused.text == not_available, (user, command)
        before = len(bot.api.messages(user.id))
        for forged in ["patients:page:1", coordinator.COURSE_CONFIRM]:
            press = await bot.api.press_button(user, refused, forged, forge=True)
            await bot.api.wait_for_answer(press)
        last = await bot.api.wait_for_message(user.id, count=before + 2)
        assert last.text == not_available
        async with bot.sessions() as session:
            targets = (
                await session.scalars(
                    select(AuditEvent.target).where(
                        AuditEvent.action == "access.denied", AuditEvent.actor == f"user:{user.id}"
                    )
                )
            ).all()
        assert sorted(target or "" for target in targets) == sorted(
            [*COMMANDS.values(), "patients_page", "course_confirm"]
        )
    # Nothing changed for the patient.
    async with bot.sessions() as session:
        patient = await store.patient_by_label(session, label="MS-001")
        assert patient is not None
        assert patient.status == PatientStatus.ACTIVE
    assert await count(bot, Course) == 1
    assert await count(bot, Patient) == 1


async def test_adherence_counts_sent_tests_only(bot: Harness) -> None:
    await bot.consented(ANNA, "MS-001")
    await bot.enroll("MS-002")
    async with bot.sessions.begin() as session:
        await session.execute(
            update(Reminder).where(Reminder.kind == "course_upcoming").values(status="sent")
        )
    await mark_tests(bot, "MS-001", sent=3, done=3)
    async with bot.sessions() as session:
        ids = [p.id for p in await store.list_patients(session)]
        found = await coordination.adherence(session, patient_ids=ids)
        assert await coordination.count_patients(session) == 2
    assert [(a.sent, a.done, a.ratio) for a in found.values()] == [(3, 3, 1.0), (0, 0, None)]


async def test_the_cervix_flag_is_set_by_the_coordinator_and_followed_by_the_yearly_reminder(
    bot: Harness,
) -> None:
    await bot.consented(ANNA, "MS-001", cbp=False)  # no cervix, as the CBP answer
    [usage] = await bot.say(CORA, "/cervix MS-001 perhaps")
    assert usage.text == (
        "Use /cervix LABEL yes or /cervix LABEL no, for example /cervix MS-001 yes."
    )
    [unknown] = await bot.say(CORA, "/cervix MS-404 yes")
    assert "MS-404" not in text(unknown)
    [done] = await bot.say(CORA, "/cervix MS-001 yes")
    assert done.text == "MS-001: cervical screening in the yearly reminder: Yes."
    async with bot.sessions() as session:
        patient = await store.patient_by_label(session, label="MS-001")
        assert patient is not None
        assert (patient.cbp, patient.cervix) == (False, True)
        changed = await session.scalar(
            select(AuditEvent.actor).where(AuditEvent.action == "patient.cervix")
        )
        # The yearly reminder (its first, 12 months after course 1) now asks for it.
        await session.execute(
            update(Reminder)
            .where(Reminder.patient_id == patient.id, Reminder.kind == "annual_screening")
            .values(ready_at=bot.clock.now())
        )
        await session.commit()
    assert changed == f"user:{CORA.id}"
    before = len(bot.api.messages(ANNA.id))
    assert (await bot.tick()).sent >= 1
    yearly = bot.api.messages(ANNA.id)[before:]
    assert any("cervical screening" in text(message) for message in yearly)
    [mydata, _file] = await bot.say(ANNA, "/mydata", replies=2)
    assert "Cervical screening reminders: yes" in text(mydata)

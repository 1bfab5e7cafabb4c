"""The patient's commands: /next, /time, /timezone, /language, /calendar, /mydata, /stop,
/forget, through the fake Bot API with PTB's real HTTP stack, the database checked after."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar
from sqlalchemy import func, select, update

from bot import messages
from bot.handlers import patient as patient_handlers
from bot.i18n import available_locales, translator
from scheduler import store
from scheduler.errors import TimezoneNearMiss
from scheduler.models import (
    AuditEvent,
    Consent,
    CoordinatorAlert,
    Course,
    DeliveryEvent,
    Dialogue,
    Invite,
    Patient,
    Reminder,
)
from scheduler.protocol import Kind
from scheduler.statuses import UNSENT, PatientStatus, ReminderStatus
from tests.bot.calendar_checks import Expected, check_reminder_calendar
from tests.bot.conftest import Harness
from tests.fake_bot_api import FakeUser, Fault, SentMessage

PAT = FakeUser(id=5151, first_name="Pat", language_code="en")
COORDINATOR = FakeUser(id=3003, first_name="Cora", language_code="en")
STRANGER = FakeUser(id=6767, first_name="Sid", language_code="en")
BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NNBSP = "\u202f"  # CLDR's narrow no-break space in "9:00 AM"
NEUTRAL = "Please ask your care team for an invite."
TIMEZONE_PROMPT = (
    "Choose your time zone below, or type the name of your city or of a large city near "
    "you, or send /cancel to keep it."
)

NEXT_FIVE = [
    f"• December 29, 2025, 9:00{NNBSP}AM: Treatment course coming up",
    f"• January 4, 2026, 9:00{NNBSP}AM: Treatment course coming up",
    f"• January 5, 2026, 9:00{NNBSP}AM: Anti-herpes medicine",
    f"• January 5, 2026, 6:00{NNBSP}PM: After your infusion: warning signs",
    f"• January 6, 2026, 6:00{NNBSP}PM: After your infusion: warning signs",
]


def text(message: SentMessage) -> str:
    assert message.content is not None
    return message.content


async def consented(harness: Harness) -> int:
    """Enrol MS-001 with a coordinator, consent as PAT; the patient's id."""
    harness.api.add_user(COORDINATOR)
    await harness.consented(PAT, coordinator_id=COORDINATOR.id)
    async with harness.sessions() as session:
        patient = await store.patient_by_chat(session, chat_id=PAT.id)
        assert patient is not None
        return patient.id


async def mark_first_sent(harness: Harness, patient_id: int) -> int:
    """Pretend the dispatcher sent the patient's first reminder; its id."""
    async with harness.sessions.begin() as session:
        [first] = await store.upcoming(session, patient_id=patient_id, limit=1)
        first.status, first.ready_at = ReminderStatus.SENT, None
        session.add(
            DeliveryEvent(
                reminder_id=first.id,
                status=ReminderStatus.SENT,
                at=harness.clock.now(),
                telegram_message_id=77,
            )
        )
        return first.id


async def reminders(harness: Harness, patient_id: int) -> dict[int, Reminder]:
    async with harness.sessions() as session:
        rows = await session.scalars(select(Reminder).where(Reminder.patient_id == patient_id))
        return {reminder.id: reminder for reminder in rows}


async def stored_patient(harness: Harness, patient_id: int) -> Patient:
    async with harness.sessions() as session:
        patient = await session.get(Patient, patient_id)
        assert patient is not None
        return patient


async def count(harness: Harness, model: type, *where: object) -> int:
    async with harness.sessions() as session:
        query = select(func.count()).select_from(model).where(*where)  # type: ignore[arg-type]
        return int(await session.scalar(query) or 0)


def lines(message: SentMessage) -> list[str]:
    return text(message).splitlines()


# --- /next ---------------------------------------------------------------------------------


async def test_next_shows_the_next_five_in_the_patients_time_zone(harness: Harness) -> None:
    await consented(harness)
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown) == ["Your next reminders (Europe/Berlin time):", *NEXT_FIVE]


async def test_next_without_upcoming_reminders(harness: Harness) -> None:
    patient_id = await consented(harness)
    async with harness.sessions.begin() as session:
        await session.execute(
            update(Reminder)
            .where(Reminder.patient_id == patient_id)
            .values(status=ReminderStatus.SENT, ready_at=None)
        )
    [shown] = await harness.say(PAT, "/next")
    assert text(shown) == "You have no upcoming reminders."
    [calendar] = await harness.say(PAT, "/calendar")
    assert calendar.file is None
    assert text(calendar) == "You have no upcoming reminders."


# --- /time ---------------------------------------------------------------------------------


async def test_time_moves_unsent_reminders_and_not_sent_ones(harness: Harness) -> None:
    patient_id = await consented(harness)
    sent_id = await mark_first_sent(harness, patient_id)
    before = await reminders(harness, patient_id)

    [prompt] = await harness.say(PAT, "/time")
    assert text(prompt).startswith(f"Your reminders come at 9:00{NNBSP}AM.")
    assert "between 07:00 and 21:00" in text(prompt)
    assert "08:30" in [button.text for button in prompt.buttons]  # a reply keyboard
    [done] = await harness.say(PAT, "08:30")
    assert lines(done)[0] == f"Your reminders now come at 8:30{NNBSP}AM."
    assert done.reply_markup == {"remove_keyboard": True}

    [shown] = await harness.say(PAT, "/next")
    assert lines(shown) == [
        "Your next reminders (Europe/Berlin time):",
        f"• January 4, 2026, 8:30{NNBSP}AM: Treatment course coming up",
        f"• January 5, 2026, 8:30{NNBSP}AM: Anti-herpes medicine",
        f"• January 5, 2026, 6:00{NNBSP}PM: After your infusion: warning signs",
        f"• January 6, 2026, 6:00{NNBSP}PM: After your infusion: warning signs",
        f"• January 7, 2026, 6:00{NNBSP}PM: After your infusion: warning signs",
    ]

    after = await reminders(harness, patient_id)
    assert (await stored_patient(harness, patient_id)).send_time == time(8, 30)
    assert after[sent_id].due_at == before[sent_id].due_at  # sent: never moved
    moved = 0
    for rid, reminder in after.items():
        if reminder.status not in UNSENT:
            continue
        local = reminder.due_at.astimezone(BERLIN)
        if reminder.kind == "post_infusion_warning":  # always 18:00, whatever the send time
            assert reminder.due_at == before[rid].due_at
        else:
            assert (local.date(), local.time()) == (reminder.local_date, time(8, 30))
            assert reminder.ready_at == reminder.due_at
            moved += 1
    assert moved > 60


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("25:00", "25:00 is not a time of day. Use HH:MM, for example 09:00."),
        ("6:00", "The send time 06:00 is outside 07:00–21:00."),
        ("soon", "soon is not a time of day. Use HH:MM, for example 09:00."),
        ("21:01", "The send time 21:01 is outside 07:00–21:00."),
    ],
)
async def test_bad_time_is_explained_and_asked_again(
    harness: Harness, typed: str, reason: str
) -> None:
    patient_id = await consented(harness)
    before = await reminders(harness, patient_id)
    await harness.say(PAT, "/time")
    [answer] = await harness.say(PAT, typed)
    assert lines(answer) == [
        reason,
        "Send the new time as HH:MM between 07:00 and 21:00, for example 08:30, "
        "or /cancel to keep it.",
    ]
    assert answer.buttons  # the choices again
    assert (await stored_patient(harness, patient_id)).send_time == time(9)
    assert {r: x.due_at for r, x in (await reminders(harness, patient_id)).items()} == {
        r: x.due_at for r, x in before.items()
    }
    # Still asking: a good answer now works.
    [done] = await harness.say(PAT, "07:00")
    assert lines(done)[0] == f"Your reminders now come at 7:00{NNBSP}AM."


async def test_bad_times_in_a_row_then_cancel_changes_nothing(harness: Harness) -> None:
    patient_id = await consented(harness)
    await harness.say(PAT, "/time")
    for typed in ("25:00", "6:00", "soon", "9" * 5000):
        [answer] = await harness.say(PAT, typed)
        assert "Send the new time as HH:MM" in text(answer)
        assert len(text(answer)) < 300  # what was typed is quoted, cut short
    [cancelled] = await harness.say(PAT, "/cancel")
    assert text(cancelled) == "OK, nothing has changed."
    assert cancelled.reply_markup == {"remove_keyboard": True}
    # The conversation is over: a time typed now is not taken, only answered as any text.
    [answer] = await harness.say(PAT, "08:30")
    assert text(answer).startswith("Messages sent here are not read by anyone.")
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown)[1:] == NEXT_FIVE
    assert (await stored_patient(harness, patient_id)).send_time == time(9)
    assert await count(harness, AuditEvent, AuditEvent.action == "preferences") == 0


# --- /timezone -----------------------------------------------------------------------------


async def assert_moved_to_new_york(harness: Harness, patient_id: int, sent_id: int) -> None:
    before_sent = datetime(2025, 12, 29, 8, tzinfo=UTC)  # 09:00 in Berlin
    after = await reminders(harness, patient_id)
    assert after[sent_id].due_at == before_sent
    patient = await stored_patient(harness, patient_id)
    assert patient.timezone == "America/New_York"
    for reminder in after.values():
        if reminder.status in UNSENT:
            local = reminder.due_at.astimezone(NEW_YORK)
            assert local.date() == reminder.local_date
            assert local.time() in {time(9), time(18)}
    [labs] = [r for r in after.values() if (r.kind, r.occurrence) == ("labs_monthly", "m1")]
    assert labs.due_at == datetime(2026, 2, 5, 14, tzinfo=UTC)  # 09:00 EST


async def test_timezone_typed_moves_unsent_reminders(harness: Harness) -> None:
    patient_id = await consented(harness)
    sent_id = await mark_first_sent(harness, patient_id)
    [prompt] = await harness.say(PAT, "/timezone")
    assert lines(prompt)[0] == "Your time zone is Germany (Berlin)."
    [done] = await harness.say(PAT, "  America/New_York ")
    assert lines(done)[0] == "Your time zone is now United States (New York)."
    assert done.reply_markup == {"remove_keyboard": True}
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown)[:2] == [
        "Your next reminders (America/New_York time):",
        f"• January 4, 2026, 9:00{NNBSP}AM: Treatment course coming up",
    ]
    await assert_moved_to_new_york(harness, patient_id, sent_id)


async def test_timezone_chosen_with_a_button(harness: Harness) -> None:
    patient_id = await consented(harness)
    sent_id = await mark_first_sent(harness, patient_id)
    [prompt] = await harness.say(PAT, "/timezone")
    choice = prompt.button("New York")
    assert choice.callback_data is None  # a reply-keyboard button sends its text
    assert "Berlin" in [button.text for button in prompt.buttons]
    [done] = await harness.say(PAT, choice.text)
    assert lines(done)[0] == "Your time zone is now United States (New York)."
    await assert_moved_to_new_york(harness, patient_id, sent_id)


async def test_bad_timezone_is_explained_and_asked_again(harness: Harness) -> None:
    patient_id = await consented(harness)
    await harness.say(PAT, "/timezone")
    for typed, reason in [
        ("Mars/Olympus_Mons", "Mars/Olympus_Mons is not a known time zone. Use a name such as"),
        ("berlni", "berlni is not a known time zone. Did you mean Berlin?"),
        ("kairo", "kairo is not a known time zone. Did you mean Kirov or Cairo?"),
        ("x" * 200, "x" * 64 + "… is not a known time zone. Use a name such as"),
    ]:
        [answer] = await harness.say(PAT, typed)
        assert lines(answer)[0].startswith(reason)
        assert lines(answer)[1:] == [TIMEZONE_PROMPT]
        assert "New York" in [button.text for button in answer.buttons]
    assert (await stored_patient(harness, patient_id)).timezone == "Europe/Berlin"
    [shown_next] = await harness.say(PAT, "/next")
    assert lines(shown_next)[1:] == NEXT_FIVE
    # /time while asking for a zone starts over with the time.
    [prompt] = await harness.say(PAT, "/time")
    assert "HH:MM" in text(prompt)
    [done] = await harness.say(PAT, "10:00")
    assert lines(done)[0] == f"Your reminders now come at 10:00{NNBSP}AM."
    assert (await stored_patient(harness, patient_id)).timezone == "Europe/Berlin"


async def consented_in(harness: Harness, locale: str) -> int:
    """Enrol MS-001 in ``locale``, consent as PAT; the patient's id."""
    harness.api.add_user(COORDINATOR)
    enrolled = await harness.enroll(locale=locale, coordinator_id=COORDINATOR.id)
    [consent] = await harness.say(PAT, f"/start {enrolled.invite_token}")
    await harness.press(PAT, consent, translator(locale).gettext(messages.ACCEPT))
    return enrolled.patient_id


def keyboard_rows(message: SentMessage) -> list[list[str]]:
    return [[button.text for button in row] for row in message.keyboard]


# The /timezone keyboards: the zones of the patient's language, then the common ones not
# among them, each by its city as CLDR writes it in that language.
REGION_EN = ["London", "Dublin", "New York", "Chicago", "Denver", "Los Angeles", "Toronto"]
REGION_EN += ["Vancouver", "Sydney", "Auckland"]
COMMON_EN = ["Lisbon", "Madrid", "Paris", "Berlin", "Rome", "Amsterdam", "Warsaw", "Athens"]
COMMON_EN += ["Kyiv", "Istanbul", "Moscow", "Cairo", "Riyadh", "Tehran", "Dubai", "São Paulo"]
REGION_RU = ["Москва", "Калининград", "Самара", "Екатеринбург", "Омск", "Новосибирск"]
REGION_RU += ["Иркутск", "Якутск", "Владивосток", "Магадан", "Петропавловск-Камчатский"]
REGION_RU += ["Минск", "Алматы"]
COMMON_RU = ["Лондон", "Дублин", "Лиссабон", "Мадрид", "Париж", "Берлин", "Рим", "Амстердам"]
COMMON_RU += ["Варшава", "Афины", "Киев", "Стамбул", "Каир", "Эр-Рияд", "Тегеран", "Дубай"]
COMMON_RU += ["Нью-Йорк", "Чикаго", "Денвер", "Лос-Анджелес", "Сан-Паулу", "Сидней"]
REGION_AR = ["الرياض", "القاهرة", "دبي", "الكويت", "قطر", "بغداد", "عمّان", "بيروت", "دمشق"]
REGION_AR += ["الدار البيضاء", "الجزائر", "تونس"]
COMMON_AR = ["لندن", "دبلن", "لشبونة", "مدريد", "باريس", "برلين", "روما", "أمستردام"]
COMMON_AR += ["وارسو", "أثينا", "كييف", "إسطنبول", "موسكو", "طهران", "نيويورك", "شيكاغو"]
COMMON_AR += ["دنفر", "لوس انجلوس", "ساو باولو", "سيدني"]


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        (
            "en",
            [*REGION_EN, *COMMON_EN],
        ),
        (
            "ru",
            [*REGION_RU, *COMMON_RU],
        ),
        (
            "ar",
            [*REGION_AR, *COMMON_AR],
        ),
    ],
)
async def test_timezone_keyboard_offers_the_patients_region_first(
    harness: Harness, locale: str, expected: list[str]
) -> None:
    await consented_in(harness, locale)
    tr = translator(locale)
    [prompt] = await harness.say(PAT, "/timezone")
    assert lines(prompt)[0] == tr.gettext("Your time zone is %(timezone)s.") % {
        "timezone": {"en": "Germany (Berlin)", "ru": "Германия (Берлин)", "ar": "ألمانيا (برلين)"}[
            locale
        ]
    }
    rows = keyboard_rows(prompt)
    assert rows[-1] == ["/cancel"]
    assert all(len(row) <= 2 for row in rows)
    assert [label for row in rows[:-1] for label in row] == expected
    assert prompt.reply_markup is not None
    assert prompt.reply_markup["one_time_keyboard"] is True


@pytest.mark.parametrize(
    ("locale", "typed", "zone", "shown"),
    [
        ("en", "kiev", "Europe/Kyiv", "Ukraine (Kyiv)"),
        ("ru", "kiev", "Europe/Kyiv", "Украина (Киев)"),
        ("ru", "Москва", "Europe/Moscow", "Россия (Москва)"),
        ("ar", "القاهرة", "Africa/Cairo", "مصر (القاهرة)"),
        ("ar", "pacific/kiritimati", "Pacific/Kiritimati", "كيريباتي (كيريتي ماتي)"),
    ],
)
async def test_timezone_typed_as_a_city_in_any_case(
    harness: Harness, locale: str, typed: str, zone: str, shown: str
) -> None:
    patient_id = await consented_in(harness, locale)
    await harness.say(PAT, "/timezone")
    [done] = await harness.say(PAT, typed)
    tr = translator(locale)
    assert lines(done)[0] == tr.gettext("Your time zone is now %(timezone)s.") % {"timezone": shown}
    assert done.reply_markup == {"remove_keyboard": True}
    assert (await stored_patient(harness, patient_id)).timezone == zone


@pytest.mark.parametrize(
    ("locale", "typed", "suggestions", "first"),
    [
        ("en", "moskow", "Moscow", "Europe/Moscow"),
        ("ru", "Моска", "Москва", "Europe/Moscow"),
        ("ru", "kairo", "Киров или Каир", "Europe/Kirov"),
        ("ar", "moskow", "موسكو", "Europe/Moscow"),
    ],
)
async def test_timezone_near_miss_suggests_and_changes_nothing(
    harness: Harness, locale: str, typed: str, suggestions: str, first: str
) -> None:
    patient_id = await consented_in(harness, locale)
    [prompt] = await harness.say(PAT, "/timezone")
    [answer] = await harness.say(PAT, typed)
    tr = translator(locale)
    # Right-to-left text keeps what was typed whole, as it does dates.
    value = f"\u2068{typed}\u2069" if locale == "ar" else typed
    assert lines(answer)[0] == tr.gettext(TimezoneNearMiss.template) % {
        "value": value,
        "suggestions": suggestions,
    }
    assert keyboard_rows(answer) == keyboard_rows(prompt)  # asked again
    assert (await stored_patient(harness, patient_id)).timezone == "Europe/Berlin"
    assert await count(harness, AuditEvent, AuditEvent.action == "preferences") == 0
    # The first suggestion, typed, is taken.
    [done] = await harness.say(PAT, suggestions.split(" ")[0])
    assert done.reply_markup == {"remove_keyboard": True}
    assert (await stored_patient(harness, patient_id)).timezone == first


# --- /language -----------------------------------------------------------------------------


async def test_language_buttons_store_the_language_and_dates_follow_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # German dates come from CLDR (Babel) whether or not a German catalog ships yet; the
    # texts are German once it does. Offer it either way.
    offered = available_locales() | {"de"}
    monkeypatch.setattr(patient_handlers, "available_locales", lambda: offered)
    patient_id = await consented(harness)

    [choose] = await harness.say(PAT, "/language")
    labels = [button.text for button in choose.buttons]
    assert "English" in labels
    assert "Deutsch" in labels
    assert len(labels) == len(offered)
    assert choose.button("Deutsch").callback_data == "lang:de"

    [done] = await harness.press(PAT, choose, "Deutsch")
    assert "Deutsch" in lines(done)[0]
    assert "29. Dezember 2025" in text(done)
    assert choose.buttons == []  # the choice was taken
    assert (await stored_patient(harness, patient_id)).locale == "de"

    [shown] = await harness.say(PAT, "/next")
    # Only what CLDR decides is checked: a German catalog may word the rest differently.
    [first, *_] = [line for line in lines(shown) if "29. Dezember 2025" in line]
    assert "09:00" in first
    assert any("5. Januar 2026" in line and "18:00" in line for line in lines(shown))
    assert "December" not in text(shown)
    assert "AM" not in text(shown)

    # Back to English: the texts and dates are English again.
    [choose_again] = await harness.say(PAT, "/language")
    await harness.press(PAT, choose_again, "English")
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown) == ["Your next reminders (Europe/Berlin time):", *NEXT_FIVE]


async def test_forged_language_is_refused(harness: Harness) -> None:
    patient_id = await consented(harness)
    [choose] = await harness.say(PAT, "/language")
    before = len(harness.api.messages(PAT.id))
    press = await harness.api.press_button(PAT, choose, "lang:xx_FAKE", forge=True)
    await harness.api.wait_for_answer(press)
    refused = await harness.api.wait_for_message(PAT.id, count=before + 1)
    assert text(refused).startswith("xx_FAKE is not an available language.")
    assert (await stored_patient(harness, patient_id)).locale == "en"


# --- /calendar -----------------------------------------------------------------------------


async def test_calendar_has_one_event_per_upcoming_reminder(harness: Harness) -> None:
    patient_id = await consented(harness)
    sent_id = await mark_first_sent(harness, patient_id)
    [sent] = await harness.say(PAT, "/calendar")
    assert sent.file is not None
    assert sent.file.filename == "reminders.ics"
    assert "calendar file" in text(sent)
    calendar = Calendar.from_ical(sent.file.data)
    events = list(calendar.walk("VEVENT"))
    unsent = sorted(
        (r for r in (await reminders(harness, patient_id)).values() if r.status in UNSENT),
        key=lambda r: (r.due_at, r.id),
    )
    assert len(events) == len(unsent) > 60
    uids = {str(event["UID"]) for event in events}
    assert len(uids) == len(events)
    assert all(uid.startswith(f"patient-{patient_id}-") for uid in uids)
    assert f"patient-{patient_id}-course_upcoming-c1-7d@remindbot" not in uids  # sent
    assert sent_id not in {r.id for r in unsent}
    starts = sorted(event.decoded("DTSTART") for event in events)
    assert starts == [r.due_at for r in unsent]
    first = min(events, key=lambda event: event.decoded("DTSTART"))
    assert str(first["SUMMARY"]) == "Treatment course coming up"
    assert first.decoded("DTSTART") == datetime(2026, 1, 4, 9, tzinfo=BERLIN)
    assert b"MS-001" not in sent.file.data


@pytest.mark.parametrize(("locale", "cbp"), [("en", False), ("ru", True), ("ar", True)])
async def test_calendar_events_remind_with_the_message_in_the_patients_language(
    harness: Harness, locale: str, cbp: bool
) -> None:
    harness.api.add_user(COORDINATOR)
    enrolled = await harness.enroll(locale=locale, cbp=cbp, coordinator_id=COORDINATOR.id)
    tr = translator(locale)
    [consent] = await harness.say(PAT, f"/start {enrolled.invite_token}")
    await harness.press(PAT, consent, tr.gettext(messages.ACCEPT))
    patient = await stored_patient(harness, enrolled.patient_id)
    assert (patient.locale, patient.cervix) == (locale, cbp)
    [sent] = await harness.say(PAT, "/calendar")
    assert sent.file is not None
    unsent = [r for r in (await reminders(harness, patient.id)).values() if r.status in UNSENT]
    expected = {
        f"patient-{patient.id}-{r.kind}-{r.occurrence}@remindbot": Expected(
            Kind(r.kind), r.about, r.due_at
        )
        for r in unsent
    }
    assert len(expected) > 60
    check_reminder_calendar(sent.file.data, expected, tr=tr, cervix=cbp, zone="Europe/Berlin")


# --- /mydata -------------------------------------------------------------------------------


async def test_mydata_summary_and_json(harness: Harness) -> None:
    patient_id = await consented(harness)
    await mark_first_sent(harness, patient_id)
    summary, document = await harness.say(PAT, "/mydata", replies=2)
    assert lines(summary)[0] == "What is stored about you:"
    for line in [
        "• Label from your clinic: MS-001",
        "• Language: English",
        "• Time zone: Europe/Berlin",
        f"• Reminder time: 9:00{NNBSP}AM",
        "• Contraception reminders: no",
        f"• Telegram chat ID: {PAT.id}",
        "• Treatment course 1: January 5, 2026, 5 infusion days",
        "• Consent given on December 29, 2025",
        "• 1 reminder sent",
    ]:
        assert line in lines(summary)

    assert document.file is not None
    assert document.file.filename == "mydata.json"
    assert b"token" not in document.file.data
    data = json.loads(document.file.data)
    assert (data["label"], data["locale"], data["timezone"], data["send_time"]) == (
        "MS-001",
        "en",
        "Europe/Berlin",
        "09:00",
    )
    assert data["can_become_pregnant"] is False
    assert data["courses"] == [{"number": 1, "start": "2026-01-05", "days": 5}]
    [consent] = data["consents"]
    assert consent["accepted_at"] == "2025-12-29T08:00:00+00:00"
    assert consent["withdrawn_at"] is None
    [invite] = data["invites"]
    assert set(invite) == {"created_at", "expires_at", "used_at", "revoked_at"}
    assert len(data["reminders"]) == len(await reminders(harness, patient_id))
    [sent] = [r for r in data["reminders"] if r["occurrence"] == "c1-7d"]
    assert sent["kind"] == "course_upcoming"
    assert sent["due"] == "2025-12-29T08:00:00+00:00"
    assert sent["status"] == "sent"
    assert [event["status"] for event in sent["events"]] == ["sent"]
    assert sent["events"][0]["telegram_message_id"] == 77
    assert {"enroll", "consent.accept"} <= {entry["action"] for entry in data["audit"]}


# --- /stop ---------------------------------------------------------------------------------


async def test_stop_confirmed_withdraws_cancels_and_alerts(harness: Harness) -> None:
    patient_id = await consented(harness)
    sent_id = await mark_first_sent(harness, patient_id)
    pending = {r.id for r in (await reminders(harness, patient_id)).values() if r.status in UNSENT}

    [ask] = await harness.say(PAT, "/stop")
    assert lines(ask)[0] == "Stop all reminders?"
    assert [button.text for button in ask.buttons] == ["Yes, stop", "No, keep them"]
    [stopped] = await harness.press(PAT, ask, "Yes, stop")
    assert text(stopped).startswith("Your reminders have stopped and your consent is withdrawn.")
    assert ask.buttons == []
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert text(alert) == "Patient MS-001 stopped the reminders (withdrew consent)."

    after = await reminders(harness, patient_id)
    assert all(after[rid].status == ReminderStatus.CANCELLED for rid in pending)
    assert all(reminder.ready_at is None for reminder in after.values())
    assert after[sent_id].status == ReminderStatus.SENT
    assert not [r for r in after.values() if r.status in {*UNSENT, ReminderStatus.SENDING}]
    cancelled_events = await count(
        harness,
        DeliveryEvent,
        DeliveryEvent.status == ReminderStatus.CANCELLED,
        DeliveryEvent.detail == "consent withdrawn",
    )
    assert cancelled_events == len(pending)
    patient = await stored_patient(harness, patient_id)
    assert patient.status == PatientStatus.WITHDRAWN
    async with harness.sessions() as session:
        consent = await session.scalar(select(Consent).where(Consent.patient_id == patient_id))
    assert consent is not None
    assert consent.withdrawn_at == harness.clock.now()

    # No longer a patient here; what is stored can still be read and erased.
    for command in ("/next", "/stop", "/time"):
        [answer] = await harness.say(PAT, command)
        assert NEUTRAL in text(answer)
    [summary, _document] = await harness.say(PAT, "/mydata", replies=2)
    assert text(summary).startswith("What is stored about you:")
    [ask] = await harness.say(PAT, "/forget")
    assert text(ask).startswith("Erase your data?")


async def test_a_new_invite_works_after_stop(harness: Harness) -> None:
    patient_id = await consented(harness)
    [ask] = await harness.say(PAT, "/stop")
    await harness.press(PAT, ask, "Yes, stop")
    await harness.consented(PAT, "MS-002")
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown)[1:] == NEXT_FIVE
    async with harness.sessions() as session:
        again = await store.patient_by_chat(session, chat_id=PAT.id)
        assert again is not None
        assert (again.label, again.status) == ("MS-002", PatientStatus.ACTIVE)
        assert again.id != patient_id
    old = await stored_patient(harness, patient_id)
    assert (old.status, old.chat_id, old.label) == (PatientStatus.WITHDRAWN, None, "MS-001")
    released = AuditEvent.action == "patient.release_chat"
    assert (
        await count(harness, AuditEvent, released, AuditEvent.target == f"patient:{patient_id}")
        == 1
    )


async def test_stop_kept_changes_nothing(harness: Harness) -> None:
    patient_id = await consented(harness)
    before = {
        r.id: (r.status, r.due_at, r.ready_at)
        for r in (await reminders(harness, patient_id)).values()
    }
    [ask] = await harness.say(PAT, "/stop")
    [kept] = await harness.press(PAT, ask, "No, keep them")
    assert text(kept) == "OK, nothing has changed."
    assert ask.buttons == []
    after = {
        r.id: (r.status, r.due_at, r.ready_at)
        for r in (await reminders(harness, patient_id)).values()
    }
    assert after == before
    assert (await stored_patient(harness, patient_id)).status == PatientStatus.ACTIVE
    assert await count(harness, Consent, Consent.withdrawn_at.is_not(None)) == 0
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown)[1:] == NEXT_FIVE
    assert harness.api.messages(COORDINATOR.id) == []


async def test_stop_press_from_another_chat_is_ignored(harness: Harness) -> None:
    patient_id = await consented(harness)
    [ask] = await harness.say(PAT, "/stop")
    # Someone else crafts the confirm press on the patient's message.
    press = await harness.api.press_button(STRANGER, ask, "stop:confirm", forge=True)
    await harness.api.wait_for_answer(press)
    [shown] = await harness.say(PAT, "/next")  # updates are handled in order
    assert lines(shown)[1:] == NEXT_FIVE
    assert (await stored_patient(harness, patient_id)).status == PatientStatus.ACTIVE
    assert harness.api.messages(STRANGER.id) == []


async def test_stop_goes_through_when_the_alert_fails_and_the_alert_is_retried(
    harness: Harness,
) -> None:
    patient_id = await consented(harness)
    harness.api.inject("sendMessage", Fault.server_error(), chat_id=COORDINATOR.id, times=1)
    [ask] = await harness.say(PAT, "/stop")
    [stopped] = await harness.press(PAT, ask, "Yes, stop")
    failed = await harness.api.wait_for("sendMessage", chat_id=COORDINATOR.id)
    await harness.say(PAT, "/next")  # the stop handler has finished
    assert failed.outcome == "server_error"
    assert text(stopped).startswith("Your reminders have stopped")
    assert (await stored_patient(harness, patient_id)).status == PatientStatus.WITHDRAWN
    assert "something went wrong" not in " ".join(text(m) for m in harness.api.messages(PAT.id))
    async with harness.sessions() as session:
        [queued] = (await session.scalars(select(CoordinatorAlert))).all()
    assert (queued.status, queued.attempts) == ("retrying", 1)
    assert queued.ready_at == harness.clock.now() + timedelta(seconds=30)

    harness.clock.advance(timedelta(seconds=29))
    assert (await harness.tick()).alerts == {}
    harness.clock.advance(timedelta(seconds=1))
    assert (await harness.tick()).alerts == {"sent": 1}
    [alert] = harness.api.messages(COORDINATOR.id)
    assert text(alert) == "Patient MS-001 stopped the reminders (withdrew consent)."
    async with harness.sessions() as session:
        [delivered] = (await session.scalars(select(CoordinatorAlert))).all()
    assert (delivered.status, delivered.attempts, delivered.ready_at) == ("sent", 2, None)
    assert delivered.telegram_message_id == alert.message_id


# --- /forget -------------------------------------------------------------------------------


async def test_forget_confirmed_erases_and_alerts(harness: Harness) -> None:
    patient_id = await consented(harness)
    await mark_first_sent(harness, patient_id)
    [ask] = await harness.say(PAT, "/forget")
    assert lines(ask)[0] == "Erase your data?"
    [erased] = await harness.press(PAT, ask, "Yes, erase")
    assert text(erased).startswith("Your data has been erased")
    alert = await harness.api.wait_for_message(COORDINATOR.id)
    assert text(alert).startswith("Patient MS-001 withdrew consent and asked for their data")

    async with harness.sessions() as session:
        assert await session.scalar(select(Patient).where(Patient.label == "MS-001")) is None
        assert await session.scalar(select(Patient).where(Patient.chat_id == PAT.id)) is None
        assert await session.get(Patient, patient_id) is None
    assert await count(harness, Course, Course.patient_id == patient_id) == 0
    assert await count(harness, Invite, Invite.patient_id == patient_id) == 0
    assert await reminders(harness, patient_id) == {}
    assert await count(harness, Consent) == 0

    [answer] = await harness.say(PAT, "/mydata")
    assert NEUTRAL in text(answer)
    # The chat can consent to a new enrolment.
    await harness.consented(PAT, "MS-002")
    [shown] = await harness.say(PAT, "/next")
    assert lines(shown)[1:] == NEXT_FIVE


async def test_forget_kept_changes_nothing(harness: Harness) -> None:
    patient_id = await consented(harness)
    [ask] = await harness.say(PAT, "/forget")
    [kept] = await harness.press(PAT, ask, "No, keep it")
    assert text(kept) == "OK, nothing has changed."
    patient = await stored_patient(harness, patient_id)
    assert (patient.label, patient.chat_id, patient.status) == (
        "MS-001",
        PAT.id,
        PatientStatus.ACTIVE,
    )
    assert await count(harness, Course, Course.patient_id == patient_id) == 1
    assert harness.api.messages(COORDINATOR.id) == []


# --- strangers -----------------------------------------------------------------------------


async def test_strangers_get_the_neutral_answer_and_nothing_is_stored(harness: Harness) -> None:
    await harness.enroll("MS-009")  # invited, never consented in this chat
    tables = (Patient, Consent, AuditEvent, Reminder, DeliveryEvent, Invite, Dialogue)
    stored = [await count(harness, table) for table in tables]
    commands = ["/next", "/time", "/timezone", "/language", "/calendar", "/mydata", "/stop"]
    for command in [*commands, "/forget"]:
        [answer] = await harness.say(STRANGER, command)
        assert NEUTRAL in text(answer), command
        assert answer.buttons == []
    [own] = await harness.say(STRANGER, "/help")
    for data in ("lang:en", "stop:confirm", "stop:keep", "forget:confirm", "forget:keep"):
        # Nothing was asked (no conversation is stored for the stranger): a stale press.
        press = await harness.api.press_button(STRANGER, own, data, forge=True)
        answered = await harness.api.wait_for_answer(press)
        assert answered["text"] == "This button is no longer active.", data
    # Text after /time or /timezone is not taken as an answer: no conversation started.
    await harness.api.send_text(STRANGER, "08:30")
    [answer] = await harness.say(STRANGER, "/next")
    assert NEUTRAL in text(answer)
    assert [await count(harness, table) for table in tables] == stored

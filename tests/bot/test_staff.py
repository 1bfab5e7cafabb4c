"""/deliveries, /grant and /revoke through the fake Bot API with PTB's real HTTP stack."""

import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import func, select, update

from bot.i18n import negotiate, translator
from bot.web import console
from scheduler import patient_data, store
from scheduler.models import AuditEvent, DeliveryEvent, Reminder, WebLogin
from scheduler.statuses import ReminderStatus, Role
from tests.bot.conftest import ADMIN, Harness
from tests.fake_bot_api import FakeUser, SentMessage

ANNA = FakeUser(id=4242, first_name="Anna", language_code="de")
MALLORY = FakeUser(id=6666, first_name="Mallory", language_code="en")
SAM = FakeUser(id=2002, first_name="Sam", language_code="en")
COCO = FakeUser(id=2003, first_name="Coco", language_code="en")

NOT_AVAILABLE = "This command is not available."
NO_DELIVERIES = "No deliveries match."
S = ReminderStatus
# 9:00 AM as Babel writes it for English: a narrow no-break space before AM.
NINE = "9:00\u202fAM"
EIGHT = "8:00\u202fAM"


def text_of(message: SentMessage) -> str:
    assert message.text is not None
    return message.text


def utc(day: int, hour: int, minute: int = 0, *, month: int = 1, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


async def set_history(
    harness: Harness,
    label: str,
    occurrence: str,
    status: ReminderStatus,
    events: list[dict[str, Any]],
    *,
    attempts: int,
) -> None:
    """Give the reminder of ``label`` a status and its history, as the dispatcher would."""
    async with harness.sessions.begin() as session:
        patient = await store.patient_by_label(session, label=label)
        assert patient is not None
        reminder_id = await session.scalar(
            select(Reminder.id).where(
                Reminder.patient_id == patient.id, Reminder.occurrence == occurrence
            )
        )
        assert reminder_id is not None
        await session.execute(
            update(Reminder)
            .where(Reminder.id == reminder_id)
            .values(status=status, attempts=attempts)
        )
        session.add_all(DeliveryEvent(reminder_id=reminder_id, **event) for event in events)


@pytest.fixture
async def log(harness: Harness) -> Harness:
    """Two patients in Berlin, enrolled a week before their first course; eleven days later
    each has 7 reminders due: 2 course announcements, 1 anti-herpes, 4 post-infusion."""
    await harness.enroll("MS-001")
    await harness.enroll("MS-002")
    await set_history(
        harness,
        "MS-001",
        "c1-7d",
        S.ACKNOWLEDGED,
        [
            {"status": S.SENDING, "at": utc(29, 8, month=12, year=2025)},
            {"status": S.SENT, "at": utc(29, 8, month=12, year=2025), "telegram_message_id": 17},
            {"status": S.ACKNOWLEDGED, "at": utc(29, 9, 30, month=12, year=2025)},
        ],
        attempts=1,
    )
    await set_history(
        harness,
        "MS-001",
        "c1-1d",
        S.FAILED,
        [
            {"status": S.SENDING, "at": utc(4, 8)},
            {"status": S.RETRYING, "at": utc(4, 8), "error_code": 502, "detail": "Bad Gateway"},
            {"status": S.SENDING, "at": utc(4, 8, 1)},
            {
                "status": S.FAILED,
                "at": utc(4, 8, 1),
                "error_code": 400,
                "detail": "Bad Request: chat not found",
            },
        ],
        attempts=2,
    )
    await set_history(
        harness,
        "MS-002",
        "c1-w0",
        S.SENT,
        [
            {"status": S.SENDING, "at": utc(5, 8)},
            {"status": S.SENT, "at": utc(5, 8), "telegram_message_id": 99},
        ],
        attempts=1,
    )
    harness.clock.current = utc(9, 12)
    await harness.grant(SAM, Role.STAFF)
    return harness


def arrows(listing: SentMessage) -> list[str]:
    """The page buttons under a delivery log (the status filters follow them)."""
    return [b.text for b in listing.buttons if b.text in ("◀", "▶")]


async def turn(harness: Harness, user: FakeUser, listing: SentMessage, button: str) -> None:
    """Press ◀ or ▶ under ``listing``: the message is edited, nothing new is sent."""
    edits, sent = len(listing.edits), len(harness.api.messages(user.id))
    await harness.press(user, listing, button, replies=0)
    assert len(listing.edits) == edits + 1
    assert len(harness.api.messages(user.id)) == sent


async def test_deliveries_pages_with_buttons(log: Harness) -> None:
    [listing] = await log.say(SAM, "/deliveries")
    assert listing.text is not None
    assert listing.text.startswith("Deliveries due so far, newest first: 1–10 of 14")
    assert arrows(listing) == ["▶"]
    # Newest due first; the patients' post-infusion warnings of January 8 lead.
    assert listing.text.count("After your infusion: warning signs") == 8
    # In the viewer's zone (the default, UTC), and on the patient's clock: still to be sent.
    assert (
        "Due: January 8, 2026, 5:00\u202fPM (UTC); "
        "patient's time: January 8, 2026, 6:00\u202fPM (Berlin)"
    ) in listing.text
    assert "Status: planned" in listing.text
    assert "Anti-herpes medicine — MS-002" in listing.text
    assert "Status: sent (1 attempt)" in listing.text
    assert f"• sent: January 5, 2026, {EIGHT} (UTC)" in listing.text

    await turn(log, SAM, listing, "▶")
    assert listing.text.startswith("Deliveries due so far, newest first: 11–14 of 14")
    assert arrows(listing) == ["◀"]
    failed = listing.text.split("\n\n")[2]
    assert failed.split("\n") == [
        "Treatment course coming up — MS-001",
        f"Due: January 4, 2026, {EIGHT} (UTC)",
        "Status: failed (2 attempts)",
        f"• sending: January 4, 2026, {EIGHT} (UTC)",
        f"• retrying: January 4, 2026, {EIGHT} (UTC) (Bad Gateway, error 502)",
        "• sending: January 4, 2026, 8:01\u202fAM (UTC)",
        "• failed: January 4, 2026, 8:01\u202fAM (UTC) (Bad Request: chat not found, error 400)",
    ]
    assert "• acknowledged: December 29, 2025, 9:30\u202fAM (UTC)" in listing.text

    await turn(log, SAM, listing, "◀")
    assert listing.text.startswith("Deliveries due so far, newest first: 1–10 of 14")
    assert len(log.api.messages(SAM.id)) == 1


async def test_page_buttons_do_not_trust_their_data(log: Harness) -> None:
    [filtered] = await log.say(SAM, "/deliveries MS-001")
    assert filtered.text is not None
    assert filtered.text.startswith("Deliveries due so far, newest first: 1–7 of 7")
    assert "Filter: patient MS-001" in filtered.text
    assert "MS-002" not in filtered.text
    assert arrows(filtered) == []  # one page
    [old] = await log.say(SAM, "/deliveries")
    [listing] = await log.say(SAM, "/deliveries")
    assert listing.text is not None

    # Pressing the page that is shown changes nothing (Telegram: "message is not modified").
    shown = listing.text
    press = await log.api.press_button(SAM, listing, "deliveries:page:0", forge=True)
    assert "text" not in await log.api.wait_for_answer(press)
    assert (listing.text, listing.edits) == (shown, [])

    # A page far beyond the end shows the last page.
    press = await log.api.press_button(SAM, listing, "deliveries:page:999999", forge=True)
    await log.api.wait_for_answer(press)
    assert listing.text.startswith("Deliveries due so far, newest first: 11–14 of 14")
    assert arrows(listing) == ["◀"]

    # Malformed pages, and the buttons of an older listing, only get a short answer.
    shown = listing.text
    for data in [
        "deliveries:page:-1",
        "deliveries:page:x",
        "deliveries:page:1 ",
        "deliveries:page:1234567",
    ]:
        press = await log.api.press_button(SAM, listing, data, forge=True)
        answer = await log.api.wait_for_answer(press)
        assert answer["text"] == "This list has expired. Send /deliveries again."
    press = await log.api.press_button(SAM, old, text="▶")
    answer = await log.api.wait_for_answer(press)
    assert answer["text"] == "This list has expired. Send /deliveries again."
    assert listing.text == shown
    assert old.edits == []
    assert len(log.api.messages(SAM.id)) == 3

    # Someone whose role was revoked cannot turn pages any more.
    async with log.sessions.begin() as session:
        await store.revoke(session, user_id=SAM.id, actor="test", now=log.clock.now())
    [refused] = await log.press(SAM, listing, "◀")
    assert refused.text == NOT_AVAILABLE
    assert listing.text == shown


async def test_deliveries_filters(log: Harness) -> None:
    [failed] = await log.say(SAM, "/deliveries failed")
    [also_failed] = await log.say(SAM, "/deliveries MS-001 FAILED")
    for message in (failed, also_failed):
        assert message.text is not None
        assert message.text.startswith("Deliveries due so far, newest first: 1–1 of 1")
        assert "Bad Request: chat not found, error 400" in message.text
        assert arrows(message) == []
    assert "Filter: status failed" in str(failed.text)
    assert "Filter: patient MS-001, status failed" in str(also_failed.text)

    [sent] = await log.say(SAM, "/deliveries MS-002 sent")
    assert "Anti-herpes medicine — MS-002" in str(sent.text)
    # An unknown label reads exactly like a known one without matching deliveries.
    [unknown] = await log.say(SAM, "/deliveries MS-404 failed")
    [none] = await log.say(SAM, "/deliveries MS-002 failed")
    [odd] = await log.say(SAM, "/deliveries ../etc/passwd")
    assert unknown.text == none.text == odd.text == NO_DELIVERIES
    assert unknown.buttons == none.buttons  # the filter buttons, "all" to go back
    assert odd.buttons == []


async def test_long_histories_show_their_latest_changes(log: Harness) -> None:
    retries = [
        {"status": status, "at": utc(5, 17, minute), "error_code": code}
        for minute in range(6)
        for status, code in [(S.SENDING, None), (S.RETRYING, 429)]
    ]
    await set_history(log, "MS-002", "c1-d0", S.RETRYING, retries, attempts=6)
    [listing] = await log.say(SAM, "/deliveries retrying")
    assert listing.text is not None
    lines = listing.text.split("\n")
    assert lines[5] == "Status: retrying (6 attempts)"
    assert lines[6:] == [
        "• … 4 earlier changes",
        *[
            f"• {status}: January 5, 2026, 5:0{minute}\u202fPM (UTC)" + suffix
            for minute in range(2, 6)
            for status, suffix in [("sending", ""), ("retrying", " (error 429)")]
        ],
    ]


async def test_deliveries_bad_arguments(log: Harness) -> None:
    [bad] = await log.say(SAM, "/deliveries MS-001 falied")
    assert bad.text == (
        "falied is not a delivery status. Choose one of: planned, sending, retrying, sent, "
        "acknowledged, failed, cancelled, expired, skipped."
    )
    [usage] = await log.say(SAM, "/deliveries MS-001 failed now")
    assert usage.text is not None
    assert usage.text.startswith("Usage: /deliveries [LABEL] [STATUS]")


async def test_erased_patients_leave_the_log(log: Harness) -> None:
    async with log.sessions.begin() as session:
        patient = await store.patient_by_label(session, label="MS-002")
        assert patient is not None
        await patient_data.erase(session, patient_id=patient.id, actor="test", now=log.clock.now())
    [cancelled] = await log.say(SAM, "/deliveries")
    assert cancelled.text is not None
    assert "MS-002" not in cancelled.text
    [gone] = await log.say(SAM, "/deliveries MS-002")
    assert gone.text == NO_DELIVERIES


async def test_grant_and_revoke_by_an_admin(harness: Harness) -> None:
    await harness.enroll("MS-001")
    [refused] = await harness.say(SAM, "/deliveries")
    assert refused.text == NOT_AVAILABLE

    [granted] = await harness.say(ADMIN, f"/grant {SAM.id} staff")
    assert granted.text == f"User {SAM.id} is now staff."
    [listing] = await harness.say(SAM, "/deliveries")
    assert listing.text == NO_DELIVERIES  # nothing is due yet

    [promoted] = await harness.say(ADMIN, f"/grant {SAM.id} Coordinator")
    assert promoted.text == f"User {SAM.id} is now coordinator."
    async with harness.sessions() as session:
        assert await store.role_of(session, user_id=SAM.id) is Role.COORDINATOR

    [revoked] = await harness.say(ADMIN, f"/revoke {SAM.id}")
    assert revoked.text == f"User {SAM.id} no longer has a staff role."
    [again] = await harness.say(ADMIN, f"/revoke {SAM.id}")
    assert again.text == f"User {SAM.id} has no staff role."
    [refused] = await harness.say(SAM, "/deliveries")
    assert refused.text == NOT_AVAILABLE

    async with harness.sessions() as session:
        audit = (
            await session.execute(
                select(AuditEvent.actor, AuditEvent.action, AuditEvent.target, AuditEvent.detail)
                .where(AuditEvent.action.in_(["role.grant", "role.revoke"]))
                .where(AuditEvent.actor.not_in(["config", "test"]))
                .order_by(AuditEvent.id)
            )
        ).all()
    actor, target = f"user:{ADMIN.id}", f"user:{SAM.id}"
    assert [tuple(row) for row in audit] == [
        (actor, "role.grant", target, "staff"),
        (actor, "role.grant", target, "coordinator"),
        (actor, "role.revoke", target, None),
    ]


async def test_admins_cannot_change_their_own_role(harness: Harness) -> None:
    [revoke] = await harness.say(ADMIN, f"/revoke {ADMIN.id}")
    assert revoke.text == "You cannot revoke your own role. Ask another admin."
    [grant] = await harness.say(ADMIN, f"/grant {ADMIN.id} staff")
    assert grant.text == "You cannot change your own role. Ask another admin."
    async with harness.sessions() as session:
        assert await store.role_of(session, user_id=ADMIN.id) is Role.ADMIN
    # Another admin may.
    await harness.grant(COCO, Role.ADMIN)
    [revoked] = await harness.say(COCO, f"/revoke {ADMIN.id}")
    assert revoked.text == f"User {ADMIN.id} no longer has a staff role."


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("/grant", "Usage: /grant USER_ID ROLE, with ROLE one of: admin, coordinator, staff."),
        ("/grant 2002", "Usage: /grant USER_ID ROLE, with ROLE one of: admin, coordinator, staff."),
        (
            "/grant 2002 staff now",
            "Usage: /grant USER_ID ROLE, with ROLE one of: admin, coordinator, staff.",
        ),
        ("/grant abc staff", "abc is not a Telegram user id. Use the number, e.g. 123456789."),
        ("/grant -5 staff", "-5 is not a Telegram user id. Use the number, e.g. 123456789."),
        ("/grant 0 staff", "0 is not a Telegram user id. Use the number, e.g. 123456789."),
        ("/grant 1_000 staff", "1_000 is not a Telegram user id. Use the number, e.g. 123456789."),
        (
            "/grant 99999999999999999999 staff",
            "99999999999999999999 is not a Telegram user id. Use the number, e.g. 123456789.",
        ),
        ("/grant 2002 owner", "owner is not a role. Choose one of: admin, coordinator, staff."),
        ("/revoke", "Usage: /revoke USER_ID"),
        ("/revoke 2002 2003", "Usage: /revoke USER_ID"),
        ("/revoke @sam", "@sam is not a Telegram user id. Use the number, e.g. 123456789."),
    ],
)
async def test_grant_and_revoke_bad_arguments(
    harness: Harness, command: str, expected: str
) -> None:
    await harness.grant(SAM, Role.STAFF)
    [answer] = await harness.say(ADMIN, command)
    assert answer.text == expected
    async with harness.sessions() as session:
        assert await store.role_of(session, user_id=SAM.id) is Role.STAFF
        changes = await session.scalars(
            select(AuditEvent.id).where(
                AuditEvent.action.in_(["role.grant", "role.revoke"]),
                AuditEvent.actor == f"user:{ADMIN.id}",
            )
        )
        assert changes.all() == []


async def test_only_admins_grant_and_revoke(harness: Harness) -> None:
    await harness.consented(ANNA)
    await harness.grant(SAM, Role.STAFF)
    await harness.grant(COCO, Role.COORDINATOR)
    attempts = [
        (MALLORY, f"/grant {MALLORY.id} admin", "grant"),
        (ANNA, f"/grant {ANNA.id} admin", "grant"),
        (SAM, f"/grant {SAM.id} admin", "grant"),
        (COCO, f"/revoke {SAM.id}", "revoke"),
        (MALLORY, "/deliveries", "deliveries"),
        (ANNA, "/deliveries MS-001", "deliveries"),
    ]
    for user, command, _ in attempts:
        [answer] = await harness.say(user, command)
        # Each reads it in their Telegram language: German for Anna.
        expected = translator(negotiate(user.language_code, default="en")).gettext(NOT_AVAILABLE)
        assert answer.text == expected
    async with harness.sessions() as session:
        denied = (
            await session.execute(
                select(AuditEvent.actor, AuditEvent.target)
                .where(AuditEvent.action == "access.denied")
                .order_by(AuditEvent.id)
            )
        ).all()
        roles = [await store.role_of(session, user_id=user.id) for user in (MALLORY, ANNA, SAM)]
    assert [tuple(row) for row in denied] == [
        (f"user:{user.id}", target) for user, _, target in attempts
    ]
    assert roles == [None, None, Role.STAFF]


async def test_deliveries_filter_by_status_with_buttons(log: Harness) -> None:
    [listing] = await log.say(SAM, "/deliveries")
    assert listing.text is not None
    assert [b.text for b in listing.buttons] == ["▶", "failed", "retrying", "expired", "sent"]
    await turn(log, SAM, listing, "failed")
    assert listing.text.startswith("Deliveries due so far, newest first: 1–1 of 1")
    assert "Filter: status failed" in listing.text
    assert "Status: failed (2 attempts)" in listing.text
    assert [b.text for b in listing.buttons] == ["• failed", "retrying", "expired", "sent", "all"]
    await turn(log, SAM, listing, "expired")
    assert listing.text == "No deliveries match."
    assert [b.text for b in listing.buttons][-1] == "all"  # the way back stays
    await turn(log, SAM, listing, "all")
    assert listing.text.startswith("Deliveries due so far, newest first: 1–10 of 14")
    assert "Filter:" not in listing.text
    for forged in ("deliveries:status:bogus", "deliveries:status:", "deliveries:status:all "):
        press = await log.api.press_button(SAM, listing, forged, forge=True)
        answer = await log.api.wait_for_answer(press)
        assert answer["text"] == "This list has expired. Send /deliveries again."
    assert len(log.api.messages(SAM.id)) == 1


# --- the viewer's time zone ----------------------------------------------------------------


async def test_a_staff_member_reads_the_log_in_their_own_zone(log: Harness) -> None:
    [shown] = await log.say(SAM, "/timezone")
    assert shown.text == (
        "You see times in UTC time, the bot's default.\n"
        "To change it, send /timezone and a city or time zone, for example "
        "/timezone Europe/Berlin."
    )
    [near] = await log.say(SAM, "/timezone new yrok")
    assert text_of(near).startswith("new yrok is not a known time zone. Did you mean")
    [chosen] = await log.say(SAM, "/timezone america/new_york")
    assert chosen.text == "You now see times in New York (America/New_York) time."
    [shown] = await log.say(SAM, "/timezone")
    assert text_of(shown).startswith("You see times in New York (America/New_York) time.\n")
    async with log.sessions() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "staff.timezone"))
        ).all()
    assert [(e.actor, e.detail) for e in events] == [(f"user:{SAM.id}", "America/New_York")]

    [listing] = await log.say(SAM, "/deliveries MS-001 failed")
    assert text_of(listing).split("\n")[3:] == [
        "Treatment course coming up — MS-001",
        "Due: January 4, 2026, 3:00\u202fAM (New York)",
        "Status: failed (2 attempts)",
        "• sending: January 4, 2026, 3:00\u202fAM (New York)",
        "• retrying: January 4, 2026, 3:00\u202fAM (New York) (Bad Gateway, error 502)",
        "• sending: January 4, 2026, 3:01\u202fAM (New York)",
        "• failed: January 4, 2026, 3:01\u202fAM (New York) (Bad Request: chat not found, "
        "error 400)",
    ]
    [planned] = await log.say(SAM, "/deliveries MS-001 planned")
    assert (
        "Due: January 8, 2026, 12:00\u202fPM (New York); "
        "patient's time: January 8, 2026, 6:00\u202fPM (Berlin)"
    ) in text_of(planned)
    # Another staff member still reads the default zone.
    await log.grant(COCO, Role.STAFF)
    [theirs] = await log.say(COCO, "/deliveries MS-001 failed")
    assert "Due: January 4, 2026, 8:00\u202fAM (UTC)" in text_of(theirs)


async def test_the_default_zone_comes_from_the_settings(log: Harness) -> None:
    services = log.app.bot_data
    assert services.settings is not None
    services.settings = services.settings.model_copy(update={"default_timezone": "Europe/Berlin"})
    [shown] = await log.say(SAM, "/timezone")
    assert text_of(shown).startswith("You see times in Berlin (Europe/Berlin) time, the bot's")
    [listing] = await log.say(SAM, "/deliveries MS-001")
    # The patient is in Berlin too: no second time.
    assert "Due: January 8, 2026, 6:00\u202fPM (Berlin)\n" in text_of(listing)
    assert "patient's time" not in text_of(listing)
    assert f"• sent: December 29, 2025, {NINE} (Berlin)" in text_of(listing)


async def test_a_sent_reminder_keeps_its_due_instant_when_the_patient_moves(
    log: Harness,
) -> None:
    """MS-002 moves from Berlin to Tokyo after their reminder of January 5 was sent: staff
    read its due instant as before; a reminder still to be sent moves to Tokyo's 9:00."""
    [before] = await log.say(SAM, "/deliveries MS-002 sent")
    sent_due = f"Due: January 5, 2026, {EIGHT} (UTC)\nStatus: sent (1 attempt)"
    assert sent_due in text_of(before)
    async with log.sessions.begin() as session:
        patient = await store.patient_by_label(session, label="MS-002")
        assert patient is not None
        await store.update_preferences(
            session,
            patient_id=patient.id,
            actor="test",
            now=log.clock.now(),
            late_window=log.settings.late_window,
            timezone=ZoneInfo("Asia/Tokyo"),
        )
    [after] = await log.say(SAM, "/deliveries MS-002 sent")
    assert sent_due in text_of(after)
    assert "Tokyo" not in text_of(after)
    async with log.sessions() as session:
        due = await session.scalar(select(Reminder.due_at).where(Reminder.occurrence == "c1-w0"))
    assert due == utc(5, 8)
    [planned] = await log.say(SAM, "/deliveries MS-002 planned")
    assert f"; patient's time: December 29, 2025, {NINE} (Tokyo)" in text_of(planned)
    assert "Berlin" not in text_of(planned)


# --- /web ----------------------------------------------------------------------------------

WEB_LINK = re.compile(r"https://console\.example\.org/login\?token=([A-Za-z0-9_-]+)$")


async def test_web_sends_a_one_time_sign_in_link(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness.settings, "public_url", "https://console.example.org/")
    await harness.grant(SAM, Role.STAFF)

    [answer] = await harness.say(SAM, "/web")

    found = WEB_LINK.search(text_of(answer))
    assert found is not None, text_of(answer)
    assert "10 minutes" in text_of(answer)
    assert answer.params["link_preview_options"] == {"is_disabled": True}
    token = found.group(1)
    # The link opens the console of the same services, once.
    app = web.Application()
    console.install(app, harness.app.bot_data, pages=[])
    async with TestClient(TestServer(app)) as client:
        opened = await client.get(f"/login?token={token}", allow_redirects=False)
        assert opened.status == 303
        assert console.COOKIE in opened.cookies
        again = await client.get(f"/login?token={token}", allow_redirects=False)
        assert again.status == 403
    async with harness.sessions() as session:
        events = (
            await session.scalars(select(AuditEvent).where(AuditEvent.action == "web.link"))
        ).all()
    assert [(event.actor, event.target) for event in events] == [(f"user:{SAM.id}", None)]
    assert token not in str([(e.actor, e.action, e.target, e.detail) for e in events])


async def test_web_is_for_staff_only(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness.settings, "public_url", "https://console.example.org")

    [answer] = await harness.say(MALLORY, "/web")

    assert text_of(answer) == NOT_AVAILABLE
    async with harness.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebLogin)) == 0


async def test_web_without_a_public_url_issues_nothing(harness: Harness) -> None:
    assert harness.settings.public_url is None
    await harness.grant(ANNA, Role.COORDINATOR)

    [answer] = await harness.say(ANNA, "/web")

    tr = translator(negotiate(ANNA.language_code, default="en"))
    assert text_of(answer) == tr.gettext(
        "The web console is not set up. The operator sets REMINDBOT_PUBLIC_URL to "
        "the address it is served at."
    )
    async with harness.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(WebLogin)) == 0

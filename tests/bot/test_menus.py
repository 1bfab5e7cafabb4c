"""The "/" menus, the bot's descriptions, and the answer to anything else, through Telegram."""

from __future__ import annotations

from datetime import timedelta

from bot import menus
from bot.i18n import available_locales, translator
from scheduler import store
from scheduler.statuses import Role
from tests.bot.conftest import ADMIN, Harness
from tests.fake_bot_api import FakeUser, SentMessage

PRIVATE = {"type": "all_private_chats"}
COORA = FakeUser(id=3201, first_name="Cora", language_code="ru")
SAM = FakeUser(id=2201, first_name="Sam", language_code="ar")
PAT = FakeUser(id=5201, first_name="Pat", language_code="ru")
STRANGER = FakeUser(id=6201, first_name="Sid", language_code="ar")


def chat(user: FakeUser) -> dict[str, object]:
    return {"type": "chat", "chat_id": user.id}


def names(commands: list[dict[str, object]]) -> list[object]:
    return [command["command"] for command in commands]


def text(message: SentMessage) -> str:
    return message.content or ""


async def consent_in(harness: Harness, user: FakeUser, label: str, locale: str) -> None:
    """Enrol ``label`` in ``locale`` and consent as ``user``, pressing the translated button."""
    enrolled = await harness.enroll(label, locale=locale)
    [consent] = await harness.say(user, f"/start {enrolled.invite_token}")
    await harness.press(user, consent, translator(locale).gettext("I agree"))


async def test_menus_and_descriptions_in_every_language_and_role(harness: Harness) -> None:
    await harness.grant(COORA, Role.COORDINATOR)
    await harness.grant(SAM, Role.STAFF)
    async with harness.sessions.begin() as session:  # the bot learnt their languages
        await store.note_language(session, user_id=COORA.id, locale="ru")
        await store.note_language(session, user_id=SAM.id, locale="ar")
    sync = harness.app.bot_data.menus
    assert sync is not None
    await sync.publish()  # as the "menus" job does at start
    api = harness.api

    patient = [name for name, _ in menus.PATIENT_COMMANDS]
    assert names(api.commands_for(PRIVATE)) == patient
    assert api.commands_for(PRIVATE)[0]["description"] == "your next reminders"
    for locale in available_locales():
        code = menus.language_code(locale)
        shown = api.commands_for(PRIVATE, code)
        assert names(shown) == patient, locale
        tr = translator(locale)
        assert [c["description"] for c in shown] == [
            tr.gettext(text) for _, text in menus.PATIENT_COMMANDS
        ]
        assert api.descriptions["description", code] == tr.gettext(menus.DESCRIPTION)
        assert api.descriptions["short_description", code] == tr.gettext(menus.SHORT_DESCRIPTION)
        if locale != "en":
            assert shown[0]["description"] != "your next reminders", locale
    assert api.descriptions["description", ""].startswith("Reminders of the monitoring")
    assert len(api.descriptions["short_description", "ar"]) <= 120

    coordinator = api.commands_for(chat(COORA))
    assert names(coordinator)[:4] == ["deliveries", "web", "timezone", "help"]
    assert "grant" not in names(coordinator)
    assert coordinator[0]["description"] == translator("ru").gettext("the delivery log")
    assert coordinator[0]["description"] != "the delivery log"
    assert names(api.commands_for(chat(SAM))) == ["deliveries", "web", "timezone", "help"]
    assert api.commands_for(chat(SAM))[0]["description"] == translator("ar").gettext(
        "the delivery log"
    )
    assert api.commands_for(chat(SAM))[1]["description"] == translator("ar").gettext(
        "a sign-in link to the web console"
    )
    admin = names(api.commands_for(chat(ADMIN)))
    assert admin[-3:] == ["grant", "revoke", "team"]
    assert "enroll" in admin


async def test_staff_menus_follow_role_changes(harness: Harness) -> None:
    menus_ = harness.app.bot_data.menus
    assert menus_ is not None
    await menus_.publish()
    api = harness.api
    api.add_user(COORA)
    [granted] = await harness.say(ADMIN, f"/grant {COORA.id} coordinator")
    assert text(granted) == f"User {COORA.id} is now coordinator."
    assert "enroll" in names(api.commands_for(chat(COORA)))
    [granted] = await harness.say(ADMIN, f"/grant {COORA.id} staff")
    assert names(api.commands_for(chat(COORA))) == ["deliveries", "web", "timezone", "help"]
    [revoked] = await harness.say(ADMIN, f"/revoke {COORA.id}")
    assert text(revoked) == f"User {COORA.id} no longer has a staff role."
    assert api.commands_for(chat(COORA)) == []  # back to the patients' menu

    # A role given elsewhere (the command line) reaches the menu at the next sync, and one
    # revoked while no bot ran is removed when one starts.
    async with harness.sessions.begin() as session:
        await store.grant(
            session, user_id=SAM.id, role=Role.STAFF, actor="cli", now=harness.clock.now()
        )
    await menus_.sync()
    assert names(api.commands_for(chat(SAM))) == ["deliveries", "web", "timezone", "help"]
    async with harness.sessions.begin() as session:
        await store.revoke(session, user_id=SAM.id, actor="cli", now=harness.clock.now())
    fresh = menus.MenuSync(harness.app.bot, harness.sessions, default_locale="en")
    await fresh.publish()
    assert api.commands_for(chat(SAM)) == []


async def test_free_text_gets_one_answer_in_a_while(harness: Harness) -> None:
    await consent_in(harness, PAT, "MS-001", "ru")
    [answer] = await harness.say(PAT, "здравствуйте, у меня вопрос")
    ru = translator("ru")
    assert text(answer).splitlines() == [
        ru.gettext("Messages sent here are not read by anyone."),
        ru.gettext("For questions, contact your MS team at your clinic."),
        ru.gettext("If this is an emergency, call your local emergency number now."),
        ru.gettext("Send /help to see what you can do."),
    ]
    assert text(answer).splitlines()[0] != "Messages sent here are not read by anyone."
    # A chatty patient is not flooded: the next messages get no answer for a while...
    await harness.api.send_text(PAT, "ещё вопрос")
    await harness.api.send_text(PAT, "/unknown")
    [help_] = await harness.say(PAT, "/help")
    assert text(help_).startswith(ru.gettext("What you can do:"))
    harness.clock.advance(timedelta(minutes=11))
    [again] = await harness.say(PAT, "/unknown")  # ...then one again
    assert text(again) == text(answer)


async def test_strangers_and_staff_get_their_own_answer(harness: Harness) -> None:
    [answer] = await harness.say(STRANGER, "مرحبا")
    ar = translator("ar")
    assert text(answer) == ar.gettext(
        "This bot sends treatment reminders to patients invited by their care team. "
        "Please ask your care team for an invite."
    )
    await harness.grant(SAM, Role.STAFF)
    [staff] = await harness.say(SAM, "hello?")
    assert text(staff).startswith(ar.gettext("Staff commands:"))


async def test_patient_help_is_complete_in_every_language(harness: Harness) -> None:
    for n, locale in enumerate(("en", "ru", "ar")):
        user = FakeUser(id=5300 + n, first_name="P", language_code=locale)
        await consent_in(harness, user, f"MS-{n:03}", locale)
        [shown] = await harness.say(user, "/help")
        tr = translator(locale)
        lines = text(shown).splitlines()
        assert lines[0] == tr.gettext("What you can do:")
        commands = [line.split(":")[0] for line in lines[1:] if line.startswith("/")]
        assert commands == [f"/{name}" for name, _ in menus.PATIENT_COMMANDS if name != "help"]
        assert "automated reminder" not in text(shown)
        if locale != "en":
            assert "your next reminders" not in text(shown)

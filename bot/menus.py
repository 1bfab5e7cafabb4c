"""The "/" menu and the bot's profile texts, per role and language.

Telegram shows a chat the commands of the narrowest scope that has any: the patients' list
is set for all private chats, once per shipped language (``language_code``), and each
coordinator, staff member and admin gets their role's list in their own chat, in their
language (``BotCommandScopeChat``). The description ("What can this bot do?", shown before
Start) and the short description (the profile) are set per language too.

``MenuSync`` keeps the staff menus in line with the roles in the database: at start, after
``/grant`` and ``/revoke``, and every minute for changes made elsewhere (the command line,
another replica). Telegram failures are logged and retried at the next sync; they never
stop the bot.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from telegram import Bot, BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat
from telegram.error import TelegramError

from bot.i18n import Translator, available_locales, translator
from scheduler.db import reading
from scheduler.errors import N_
from scheduler.models import AuditEvent, StaffUser
from scheduler.statuses import Role

log = logging.getLogger(__name__)

# (command, what it does); the help texts list the same.
PATIENT_COMMANDS: Final = (
    # TRANSLATORS: menu entry of a command (at most a few words, no final full stop).
    ("next", N_("your next reminders")),
    # TRANSLATORS: menu entry of a command.
    ("time", N_("change the time of your reminders")),
    # TRANSLATORS: menu entry of a command.
    ("timezone", N_("change your time zone")),
    # TRANSLATORS: menu entry of a command.
    ("language", N_("change the language")),
    # TRANSLATORS: menu entry of a command.
    ("calendar", N_("your reminders as a calendar file")),
    # TRANSLATORS: menu entry of a command.
    ("mydata", N_("what is stored about you")),
    # TRANSLATORS: menu entry of a command.
    ("stop", N_("stop all reminders")),
    # TRANSLATORS: menu entry of a command.
    ("forget", N_("stop and erase your data")),
    # TRANSLATORS: menu entry of a command.
    ("help", N_("what you can do here")),
)
STAFF_COMMANDS: Final = (
    # TRANSLATORS: menu entry of a staff command.
    ("deliveries", N_("the delivery log")),
    # TRANSLATORS: menu entry of a staff command.
    ("web", N_("a sign-in link to the web console")),
    # TRANSLATORS: menu entry of a staff command.
    ("timezone", N_("the time zone you see times in")),
    # TRANSLATORS: menu entry of a staff command.
    ("help", N_("the commands you can use")),
)
COORDINATOR_COMMANDS: Final = (
    # TRANSLATORS: menu entry of a coordinator command.
    ("enroll", N_("enrol a patient")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("patients", N_("your teams' patients")),
    # TRANSLATORS: menu entry of a coordinator command; LABEL is the patient's pseudonym.
    ("patient", N_("one patient: /patient LABEL")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("course", N_("record a course: /course LABEL DATE")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("pause", N_("pause a patient's reminders")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("resume", N_("resume a patient's reminders")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("invite", N_("a new invite link")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("cervix", N_("cervical screening in the yearly reminder")),
    # TRANSLATORS: menu entry of a coordinator command.
    ("forget", N_("erase a patient: /forget LABEL")),
    # TRANSLATORS: menu entry of a command that leaves a question of the bot.
    ("cancel", N_("stop the current question")),
)
ADMIN_COMMANDS: Final = (
    # TRANSLATORS: menu entry of an admin command.
    ("grant", N_("give a staff role")),
    # TRANSLATORS: menu entry of an admin command.
    ("revoke", N_("remove a staff role")),
    # TRANSLATORS: menu entry of an admin command.
    ("team", N_("care teams")),
)

# TRANSLATORS: the bot's description, shown in an empty chat before the person presses
# Start (at most 512 characters).
DESCRIPTION: Final = N_(
    "Reminders of the monitoring programme for alemtuzumab (Lemtrada) treatment, sent on "
    "behalf of your MS care team at your local time and in your language. To start, open the "
    "invite link your care team gave you. This bot does not replace your MS team or "
    "emergency services."
)
# TRANSLATORS: the bot's short description on its profile (at most 120 characters).
SHORT_DESCRIPTION: Final = N_(
    "Monitoring reminders for alemtuzumab (Lemtrada), from your MS care team."
)


def commands(role: Role | None, tr: Translator) -> list[BotCommand]:
    """The menu of a patient (``None``) or of a staff role, in ``tr``'s language."""
    if role is None:
        entries: Sequence[tuple[str, str]] = PATIENT_COMMANDS
    else:
        entries = [*STAFF_COMMANDS]
        if role in (Role.COORDINATOR, Role.ADMIN):
            entries += COORDINATOR_COMMANDS
        if role is Role.ADMIN:
            entries += ADMIN_COMMANDS
    return [BotCommand(name, tr.gettext(text)) for name, text in entries]


def language_code(locale: str) -> str:
    """Telegram's language codes are two letters: "pt_BR" is "pt"."""
    return locale.split("_")[0].lower()


class MenuSync:
    """Publishes the menus and descriptions, and keeps the staff menus in line with roles."""

    def __init__(
        self, bot: Bot, sessions: async_sessionmaker[AsyncSession], *, default_locale: str
    ) -> None:
        self.bot = bot
        self.sessions = sessions
        self.default_locale = default_locale
        # What each staff chat was last given: (role, locale); what changes is sent again.
        self.published: dict[int, tuple[Role, str]] = {}
        self.languages_done = False

    async def publish(self) -> None:
        """Everything: the patients' menu and the descriptions in every language, then the
        staff menus. The first time, the menus of people whose role was revoked (while no
        bot ran, say) are removed too."""
        if not self.languages_done:
            async with reading(self.sessions) as session:
                revoked = await session.scalars(
                    select(AuditEvent.target).where(AuditEvent.action == "role.revoke")
                )
                for target in revoked:
                    user = (target or "").removeprefix("user:")
                    if user.isdigit():
                        self.published.setdefault(int(user), (Role.STAFF, ""))
            self.languages_done = await self._languages()
        await self.sync()

    async def _languages(self) -> bool:
        default = translator(self.default_locale)
        scope = BotCommandScopeAllPrivateChats()
        try:
            # Without a language code: anyone whose language is not shipped.
            await self.bot.set_my_commands(commands(None, default), scope=scope)
            await self.bot.set_my_description(default.gettext(DESCRIPTION))
            await self.bot.set_my_short_description(default.gettext(SHORT_DESCRIPTION))
            for locale in sorted(available_locales()):
                tr, code = translator(locale), language_code(locale)
                await self.bot.set_my_commands(commands(None, tr), scope=scope, language_code=code)
                await self.bot.set_my_description(tr.gettext(DESCRIPTION), language_code=code)
                await self.bot.set_my_short_description(
                    tr.gettext(SHORT_DESCRIPTION), language_code=code
                )
        except TelegramError as error:
            log.warning("menus: the patients' menu was not set: %s", type(error).__name__)
            return False
        return True

    async def sync(self) -> None:
        """Give each staff chat its role's menu; a chat whose role was revoked goes back to
        the patients' menu."""
        async with reading(self.sessions) as session:
            rows = (
                await session.execute(
                    select(StaffUser.telegram_user_id, StaffUser.role, StaffUser.locale)
                )
            ).all()
        wanted = {
            user_id: (Role(role), locale or self.default_locale) for user_id, role, locale in rows
        }
        for user_id, (role, locale) in sorted(wanted.items()):
            if self.published.get(user_id) == (role, locale):
                continue
            try:
                await self.bot.set_my_commands(
                    commands(role, translator(locale)), scope=BotCommandScopeChat(user_id)
                )
            except TelegramError as error:
                log.warning("menus: a staff menu was not set: %s", type(error).__name__)
                continue
            self.published[user_id] = (role, locale)
        for user_id in sorted(set(self.published) - set(wanted)):
            try:
                await self.bot.delete_my_commands(scope=BotCommandScopeChat(user_id))
            except TelegramError as error:
                log.warning("menus: a staff menu was not removed: %s", type(error).__name__)
                continue
            del self.published[user_id]

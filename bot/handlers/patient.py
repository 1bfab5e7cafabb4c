"""What a patient does in their private chat with the bot."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
)

from bot import dialogues, messages, timezones
from bot.auth import allows, role_of
from bot.calendar import plan_calendar
from bot.context import BotContext
from bot.handlers.common import (
    PRIVATE,
    WITH_ARGUMENT,
    Handlers,
    reply,
    send_alerts_now,
    tell_team_of_erasure,
    user_translator,
)
from bot.i18n import Translator, available_locales, translator
from bot.menus import PATIENT_COMMANDS
from bot.texts import KIND_TITLES
from scheduler import patient_data, store
from scheduler.alerts import AlertKind
from scheduler.db import reading
from scheduler.dialogues import Open
from scheduler.errors import ValidationError
from scheduler.models import Patient, Reminder
from scheduler.outbox import alert_reached
from scheduler.planner import PlanItem
from scheduler.protocol import EARLIEST_SEND_TIME, LATEST_SEND_TIME, Kind
from scheduler.statuses import UNSENT, PatientStatus, ReminderStatus, Role
from scheduler.validation import check_locale, parse_send_time

log = logging.getLogger(__name__)

CONSENT_ACCEPT = "consent:accept"
CONSENT_DECLINE = "consent:decline"
AGENDA_SIZE = 5

# Callback data of the patient's buttons. None of it is trusted: every press re-reads the
# patient from the presser's own private chat.
LANGUAGE = "lang:"  # + a locale code
STOP_CONFIRM = "stop:confirm"
STOP_KEEP = "stop:keep"
FORGET_CONFIRM = "forget:confirm"
FORGET_KEEP = "forget:keep"

# States of the /time and /timezone conversation.
# A consent waits this long for its answer, at most (the invite may expire sooner).
CONSENT_LASTS = timedelta(hours=24)
CANCEL = "/cancel"
# Offered as reply-keyboard buttons; a press sends the text, so typing works the same way.
TIME_CHOICES = ("07:30", "08:00", "08:30", "09:00", "12:00", "18:00", "19:00", "20:00")
# Offered after the zones of the patient's language (bot.timezones.REGION_ZONES).
COMMON_TIMEZONES = (
    "Europe/London",
    "Europe/Dublin",
    "Europe/Lisbon",
    "Europe/Madrid",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Rome",
    "Europe/Amsterdam",
    "Europe/Warsaw",
    "Europe/Athens",
    "Europe/Kyiv",
    "Europe/Istanbul",
    "Europe/Moscow",
    "Africa/Cairo",
    "Asia/Riyadh",
    "Asia/Tehran",
    "Asia/Dubai",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "Australia/Sydney",
)
# Longer input cannot be valid; cutting it keeps an error message that quotes it short.
MAX_TIME_INPUT = 16
MAX_TIMEZONE_INPUT = 64


def _when(moment: datetime, patient: Patient, tr: Translator) -> str:
    local = moment.astimezone(ZoneInfo(patient.timezone))
    # TRANSLATORS: a reminder's date and local time, e.g. "February 5, 2026, 9:00 AM".
    return tr.gettext("%(date)s, %(time)s") % {
        "date": tr.date(local.date()),
        "time": tr.time(local.time()),
    }


def agenda(reminders: Sequence[Reminder], patient: Patient, tr: Translator) -> str:
    """One line per reminder: when, and what."""
    return "\n".join(
        f"• {_when(r.due_at, patient, tr)}: {tr.gettext(KIND_TITLES[Kind(r.kind)])}"
        for r in reminders
    )


async def patient_of_chat(session: AsyncSession, update: Update) -> Patient | None:
    chat = update.effective_chat
    if chat is None:
        return None
    return await store.patient_by_chat(session, chat_id=chat.id)


async def current_patient(session: AsyncSession, update: Update) -> Patient | None:
    """The consented, not withdrawn patient of this chat: who may use the patient commands."""
    patient = await patient_of_chat(session, update)
    if patient is None or patient.status == PatientStatus.WITHDRAWN:
        return None
    return patient


def _own_chat(update: Update) -> bool:
    """A button press in the presser's own private chat (callback data is never trusted)."""
    user, chat = update.effective_user, update.effective_chat
    return user is not None and chat is not None and chat.id == user.id


def invite_only(tr: Translator) -> str:
    return tr.gettext(
        "This bot sends treatment reminders to patients invited by their care team. "
        "Please ask your care team for an invite."
    )


async def _refuse(update: Update, context: BotContext) -> None:
    """The one answer for anyone who is not (or no longer) a patient; nothing is stored."""
    await reply(update, invite_only(user_translator(update.effective_user, context)))


def _coming_up(coming: Sequence[Reminder], patient: Patient, tr: Translator) -> str:
    if not coming:
        return tr.gettext("You have no upcoming reminders.")
    return "\n".join(
        [
            # TRANSLATORS: above the list of the next reminders; %(timezone)s is an IANA
            # name such as Europe/Berlin.
            tr.gettext("Your next reminders (%(timezone)s time):") % {"timezone": patient.timezone},
            agenda(coming, patient, tr),
        ]
    )


def _language_name(code: str) -> str:
    """The language's name in itself ("English", "Deutsch", "Français"). CLDR writes some
    in lower case, for use inside a sentence; here it starts a label, so it is capitalised."""
    try:
        name = Locale.parse(code.replace("-", "_")).get_display_name() or code
    except (ValueError, UnknownLocaleError):
        name = code
    return name[:1].upper() + name[1:]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _choices(options: Sequence[str], per_row: int) -> ReplyKeyboardMarkup:
    rows = [list(options[i : i + per_row]) for i in range(0, len(options), per_row)]
    return ReplyKeyboardMarkup([*rows, [CANCEL]], one_time_keyboard=True, resize_keyboard=True)


async def _confirmed(update: Update, context: BotContext, name: str) -> bool:
    """A button answers the question ``name`` that is still open (and closes it): else the
    press is answered as stale and its buttons removed. The question is in the database,
    so a restart or another replica takes the press, and two presses act once."""
    if _own_chat(update) and await dialogues.take(update, context, name) is not None:
        return True
    query = update.callback_query
    if query is not None:
        tr = await _translator_for(update, context)
        await query.answer(tr.gettext("This button is no longer active."))
        await _remove_buttons(update)
    return False


async def _remove_buttons(update: Update) -> None:
    query = update.callback_query
    if query is not None and isinstance(query.message, Message) and query.message.reply_markup:
        await query.edit_message_reply_markup(reply_markup=None)


def _consent_keyboard(tr: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(tr.gettext(messages.ACCEPT), callback_data=CONSENT_ACCEPT),
                InlineKeyboardButton(tr.gettext(messages.DECLINE), callback_data=CONSENT_DECLINE),
            ]
        ]
    )


def _ask_care_team(tr: Translator) -> str:
    return tr.gettext(
        "This link is not valid or has expired. Please ask your care team for a new invite."
    )


async def start(update: Update, context: BotContext) -> None:
    """``/start [token]``: open an invite, or come back after blocking the bot."""
    user = update.effective_user
    if user is None or update.effective_chat is None:
        return
    now = context.clock.now()
    token = context.args[0] if context.args else None
    invited: Patient | None = None
    invite = None
    async with context.sessions.begin() as session:
        patient = await patient_of_chat(session, update)
        if patient is not None and patient.status != PatientStatus.WITHDRAWN:
            tr = translator(patient.locale)
            if patient.status == PatientStatus.UNREACHABLE:
                await store.resume(
                    session, patient_id=patient.id, actor=f"patient:{patient.id}", now=now
                )
                await reply(update, tr.gettext("Welcome back. Your reminders start again."))
            else:
                await reply(
                    update,
                    tr.gettext("You are already signed up. Send /help to see what you can do."),
                )
            return
        invite = await store.find_invite(session, token=token, now=now) if token else None
        if invite is not None:
            invited = await session.get(Patient, invite.patient_id)
    if token is None:  # not from an invite link: say what this bot is, or list commands
        await help_command(update, context)
        return
    if invite is None or invited is None:
        await reply(update, _ask_care_team(user_translator(user, context)))
        return
    await dialogues.keep(
        update,
        context,
        dialogues.CONSENT,
        data={"invite": invite.id},
        lasts=min(CONSENT_LASTS, invite.expires_at - now),
        patient_id=invited.id,
    )
    tr = translator(invited.locale)
    await reply(update, _consent_text(tr, context), reply_markup=_consent_keyboard(tr))


def _consent_text(tr: Translator, context: BotContext) -> str:
    settings = context.settings
    return messages.consent_text(
        tr, contact=settings.clinic_contact, retention=settings.data_retention
    )


async def consent_accept(update: Update, context: BotContext) -> None:
    """The patient agrees: record consent, start their reminders, show what comes next."""
    query = update.callback_query
    chat = update.effective_chat
    user = update.effective_user
    if query is None or chat is None or user is None:
        return
    await query.answer()
    if chat.id != user.id:  # only ever the presser's own private chat
        return
    consent = await dialogues.find(update, context, dialogues.CONSENT)
    now = context.clock.now()
    async with context.sessions.begin() as session:
        invite = (
            await store.usable_invite(session, invite_id=int(consent.data["invite"]), now=now)
            if consent is not None
            else None
        )
        if invite is None:
            await reply(update, _ask_care_team(user_translator(update.effective_user, context)))
            return
        linked = await store.patient_by_chat(session, chat_id=chat.id)
        if linked is not None and linked.status == PatientStatus.WITHDRAWN:
            # A withdrawn enrolment keeps its chat only until the chat consents again.
            await patient_data.release_chat(
                session, patient_id=linked.id, actor=f"patient:{linked.id}", now=now
            )
        elif linked is not None:
            tr = user_translator(update.effective_user, context)
            await reply(
                update,
                tr.gettext(
                    "This Telegram account is already linked to an enrolment. "
                    "Please ask your care team."
                ),
            )
            return
        invited = await session.get(Patient, invite.patient_id)
        assert invited is not None
        tr = translator(invited.locale)
        patient = await store.accept_consent(
            session,
            invite=invite,
            chat_id=chat.id,
            version=messages.CONSENT_VERSION,
            text=_consent_text(tr, context),
            locale=invited.locale,
            now=now,
        )
        coming = await store.upcoming(session, patient_id=patient.id, limit=3)
    await dialogues.end(update, context, dialogues.CONSENT)
    if query.message is not None:
        await query.edit_message_reply_markup(reply_markup=None)
    lines = [
        tr.gettext("Thank you. Your reminders start now."),
        tr.gettext("They come at %(time)s, %(timezone)s time.")
        % {"time": tr.time(patient.send_time), "timezone": patient.timezone},
    ]
    if coming:
        lines += ["", tr.gettext("Coming up:"), agenda(coming, patient, tr)]
    lines += ["", tr.gettext("Send /help to see what you can do.")]
    await reply(update, "\n".join(lines))


async def consent_decline(update: Update, context: BotContext) -> None:
    """The patient does not agree: nothing is stored; the invite stays usable until it expires."""
    query = update.callback_query
    if query is None:
        return
    await query.answer()
    consent = await dialogues.take(update, context, dialogues.CONSENT)
    async with context.sessions() as session:
        invited = await session.get(Patient, consent.patient_id) if consent else None
    tr = translator(invited.locale) if invited else user_translator(update.effective_user, context)
    if query.message is not None:
        await query.edit_message_reply_markup(reply_markup=None)
    await reply(
        update,
        tr.gettext(
            "You did not agree, so you will get no reminders and nothing about you has changed. "
            "If you change your mind, open your invite link again."
        ),
    )


async def help_command(update: Update, context: BotContext) -> None:
    """``/help``: what this person can do here."""
    async with context.sessions() as session:
        patient = await current_patient(session, update)
    if patient is not None:
        tr = translator(patient.locale)
        await reply(update, patient_help(tr))
        return
    tr = user_translator(update.effective_user, context)
    role = await role_of(update, context)
    if role is None:
        await reply(update, invite_only(tr))
        return
    await reply(update, staff_help(role, tr))


def patient_help(tr: Translator) -> str:
    """What a patient can do: the commands of their menu, and where to turn in an emergency."""
    lines = [tr.gettext("What you can do:")]
    lines += [f"/{name}: {tr.gettext(text)}" for name, text in PATIENT_COMMANDS if name != "help"]
    lines += [
        "",
        tr.gettext(
            "This bot does not replace your MS team or emergency services. In an "
            "emergency, call your local emergency number."
        ),
    ]
    return "\n".join(lines)


def staff_help(role: Role, tr: Translator) -> str:
    """The commands ``role`` may use."""
    lines = [
        tr.gettext("Staff commands:"),
        tr.gettext("/deliveries [LABEL] [STATUS]: the delivery log"),
        # TRANSLATORS: keep "/web" as it is.
        tr.gettext("/web: a sign-in link to the web console"),
        # TRANSLATORS: keep "/timezone" as it is; ZONE may be translated.
        tr.gettext("/timezone ZONE: the time zone you see times in"),
    ]
    if allows(role, Role.COORDINATOR):
        lines += [
            tr.gettext("/enroll: enrol a patient"),
            tr.gettext("/course LABEL DATE [DAYS]: record a course"),
            tr.gettext("/patients: all patients"),
            tr.gettext("/patient LABEL: one patient"),
            tr.gettext("/pause LABEL, /resume LABEL: stop or restart reminders"),
            tr.gettext("/invite LABEL: a new invite link"),
            tr.gettext("/cervix LABEL yes|no: cervical screening in the yearly reminder"),
            tr.gettext("/forget LABEL: erase a patient"),
        ]
    if allows(role, Role.ADMIN):
        lines += [
            tr.gettext("/grant USER_ID ROLE: give a staff role"),
            tr.gettext("/revoke USER_ID: remove a staff role"),
            tr.gettext("/team: care teams and who is in them"),
        ]
    return "\n".join(lines)


async def next_command(update: Update, context: BotContext) -> None:
    """``/next``: the next reminders, in the patient's language and time zone."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
        coming = (
            await store.upcoming(session, patient_id=patient.id, limit=AGENDA_SIZE)
            if patient
            else []
        )
    if patient is None:
        await _refuse(update, context)
        return
    await reply(update, _coming_up(coming, patient, translator(patient.locale)))


async def _change(
    update: Update,
    context: BotContext,
    *,
    timezone: ZoneInfo | None = None,
    send_time: time | None = None,
    locale: str | None = None,
) -> tuple[Patient, list[Reminder]] | None:
    """Store a new preference of the chat's patient (unsent reminders are re-planned) and
    return the patient with their next reminders; None if the chat has no patient."""
    async with context.sessions.begin() as session:
        patient = await current_patient(session, update)
        if patient is None:
            return None
        changed = await store.update_preferences(
            session,
            patient_id=patient.id,
            actor=f"patient:{patient.id}",
            now=context.clock.now(),
            late_window=context.settings.late_window,
            timezone=timezone,
            send_time=send_time,
            locale=locale,
        )
        assert changed is not None  # locked in this transaction, found just before
        coming = await store.upcoming(session, patient_id=patient.id, limit=AGENDA_SIZE)
    return changed, coming


async def _confirm_change(
    update: Update, done: Callable[[Translator], str], patient: Patient, coming: list[Reminder]
) -> None:
    tr = translator(patient.locale)
    await reply(
        update,
        "\n\n".join([done(tr), _coming_up(coming, patient, tr)]),
        reply_markup=ReplyKeyboardRemove(),
    )


async def language_command(update: Update, context: BotContext) -> None:
    """``/language``: one button per language the bot ships."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    await dialogues.keep(update, context, dialogues.LANGUAGE, patient_id=patient.id)
    tr = translator(patient.locale)
    buttons = [
        [InlineKeyboardButton(_language_name(code), callback_data=f"{LANGUAGE}{code}")]
        for code in sorted(available_locales())
    ]
    await reply(
        update, tr.gettext("Choose your language:"), reply_markup=InlineKeyboardMarkup(buttons)
    )


async def language_chosen(update: Update, context: BotContext) -> None:
    """A language button: store the language and answer in it."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    if not await _confirmed(update, context, dialogues.LANGUAGE):
        return
    await query.answer()
    if not _own_chat(update):
        return
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    tr = translator(patient.locale)
    try:
        locale = check_locale(query.data.removeprefix(LANGUAGE), available_locales())
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    changed = await _change(update, context, locale=locale)
    if changed is None:
        await _refuse(update, context)
        return
    await _remove_buttons(update)
    await _confirm_change(
        update,
        # TRANSLATORS: %(language)s is the language's own name, e.g. "Deutsch".
        lambda tr: (
            tr.gettext("Your language is now %(language)s.") % {"language": _language_name(locale)}
        ),
        *changed,
    )


def _time_prompt(tr: Translator) -> str:
    # TRANSLATORS: %(earliest)s and %(latest)s are times written HH:MM (07:00, 21:00).
    # Keep HH:MM and /cancel as they are.
    return tr.gettext(
        "Send the new time as HH:MM between %(earliest)s and %(latest)s, for example 08:30, "
        "or /cancel to keep it."
    ) % {
        "earliest": EARLIEST_SEND_TIME.strftime("%H:%M"),
        "latest": LATEST_SEND_TIME.strftime("%H:%M"),
    }


async def time_command(update: Update, context: BotContext) -> None:
    """``/time``: ask for a new local time for the reminders."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    await dialogues.keep(update, context, dialogues.TIME, patient_id=patient.id)
    tr = translator(patient.locale)
    await reply(
        update,
        "\n".join(
            [
                tr.gettext("Your reminders come at %(time)s.")
                % {"time": tr.time(patient.send_time)},
                _time_prompt(tr),
            ]
        ),
        reply_markup=_choices(TIME_CHOICES, per_row=4),
    )


T = TypeVar("T")


async def _preference_received(
    update: Update,
    context: BotContext,
    *,
    name: str,
    parse: Callable[[str, Translator], T],
    limit: int,
    prompt: Callable[[Translator], str],
    keyboard: Callable[[Translator], ReplyKeyboardMarkup],
    change: Callable[[T], dict[str, Any]],
    done: Callable[[Translator, T], str],
) -> None:
    """An answer to /time or /timezone (the conversation ``name``): checked (else asked
    again with the reason), stored, and the unsent reminders moved to it."""
    if update.message is None or update.message.text is None:
        return
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        await dialogues.end(update, context, name)
        await _refuse(update, context)
        return
    tr = translator(patient.locale)
    try:
        value = parse(_clip(update.message.text, limit), tr)
    except ValidationError as error:
        await reply(
            update, "\n".join([error.render(tr.gettext), prompt(tr)]), reply_markup=keyboard(tr)
        )
        return
    await dialogues.end(update, context, name)
    changed = await _change(update, context, **change(value))
    if changed is None:
        await _refuse(update, context)
        return
    await _confirm_change(update, lambda tr: done(tr, value), *changed)


async def time_received(update: Update, context: BotContext, _: Open) -> None:
    """The new send time: checked, stored, and the unsent reminders moved to it."""
    await _preference_received(
        update,
        context,
        name=dialogues.TIME,
        parse=lambda text, tr: parse_send_time(text),
        limit=MAX_TIME_INPUT,
        prompt=_time_prompt,
        keyboard=lambda tr: _choices(TIME_CHOICES, per_row=4),
        change=lambda send_time: {"send_time": send_time},
        done=lambda tr, send_time: (
            tr.gettext("Your reminders now come at %(time)s.") % {"time": tr.time(send_time)}
        ),
    )


def _timezone_prompt(tr: Translator) -> str:
    # TRANSLATORS: keep /cancel as it is: a command. The bot knows the cities' names in
    # this language.
    return tr.gettext(
        "Choose your time zone below, or type the name of your city or of a large city near "
        "you, or send /cancel to keep it."
    )


def _timezone_keyboard(tr: Translator) -> ReplyKeyboardMarkup:
    """The zones of the patient's language first, each by its city in that language; a
    press sends the name, which goes through the same parser as a typed one."""
    zones = timezones.offered(tr.locale, COMMON_TIMEZONES)
    return _choices([timezones.city(zone, tr.locale) for zone in zones], per_row=2)


async def timezone_command(update: Update, context: BotContext) -> None:
    """``/timezone``: ask for a new time zone, offering common ones; for coordinators and
    staff, the zone they read times in (``staff_timezone``)."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        if await role_of(update, context) is not None:
            await staff_timezone(update, context)
        else:
            await _refuse(update, context)
        return
    await dialogues.keep(update, context, dialogues.TIMEZONE, patient_id=patient.id)
    tr = translator(patient.locale)
    await reply(
        update,
        "\n".join(
            [
                tr.gettext("Your time zone is %(timezone)s.")
                % {"timezone": timezones.place(patient.timezone, tr.locale)},
                _timezone_prompt(tr),
            ]
        ),
        reply_markup=_timezone_keyboard(tr),
    )


def _staff_timezone_usage(tr: Translator) -> str:
    # TRANSLATORS: keep "/timezone" and "Europe/Berlin" as they are.
    return tr.gettext(
        "To change it, send /timezone and a city or time zone, for example /timezone Europe/Berlin."
    )


async def staff_timezone(update: Update, context: BotContext) -> None:
    """``/timezone [ZONE]`` from a coordinator or staff member: the zone they read times
    in (the delivery log, invite expiry), shown or set."""
    user = update.effective_user
    if user is None:
        return
    tr = user_translator(user, context)
    text = " ".join(context.args or [])
    if not text:
        async with reading(context.sessions) as session:
            chosen = await store.staff_timezone(session, user_id=user.id)
        zone = chosen or context.settings.default_timezone
        values = {"timezone": timezones.with_id(zone, tr.locale)}
        shown = (
            # TRANSLATORS: %(timezone)s is a city and its zone, e.g. "Berlin (Europe/Berlin)".
            tr.gettext("You see times in %(timezone)s time.") % values
            if chosen
            # TRANSLATORS: %(timezone)s is a city and its zone, e.g. "Berlin (Europe/Berlin)",
            # or UTC: the zone the clinic set for everyone who has not chosen one.
            else tr.gettext("You see times in %(timezone)s time, the bot's default.") % values
        )
        await reply(update, "\n".join([shown, _staff_timezone_usage(tr)]))
        return
    try:
        zone_info = timezones.parse(_clip(text, MAX_TIMEZONE_INPUT), tr.locale, ids=True)
    except ValidationError as error:
        await reply(update, "\n".join([error.render(tr.gettext), _staff_timezone_usage(tr)]))
        return
    async with context.sessions.begin() as session:
        stored = await store.set_staff_timezone(
            session, user_id=user.id, timezone=zone_info, now=context.clock.now()
        )
    if not stored:  # the role was revoked meanwhile
        await _refuse(update, context)
        return
    await reply(
        update,
        # TRANSLATORS: %(timezone)s is a city and its zone, e.g. "Berlin (Europe/Berlin)".
        tr.gettext("You now see times in %(timezone)s time.")
        % {"timezone": timezones.with_id(zone_info.key, tr.locale)},
    )


async def timezone_received(update: Update, context: BotContext, _: Open) -> None:
    """The new time zone (typed or chosen): checked, stored, the unsent reminders moved."""
    await _preference_received(
        update,
        context,
        name=dialogues.TIMEZONE,
        parse=lambda text, tr: timezones.parse(text, tr.locale),
        limit=MAX_TIMEZONE_INPUT,
        prompt=_timezone_prompt,
        keyboard=_timezone_keyboard,
        change=lambda zone: {"timezone": zone},
        done=lambda tr, zone: (
            tr.gettext("Your time zone is now %(timezone)s.")
            % {"timezone": timezones.place(zone.key, tr.locale)}
        ),
    )


async def _translator_for(update: Update, context: BotContext) -> Translator:
    """The patient's language, or the person's Telegram language if not a patient."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    return (
        translator(patient.locale) if patient else user_translator(update.effective_user, context)
    )


async def cancel(update: Update, context: BotContext, _: Open) -> None:
    """``/cancel``: leave /time, /timezone or a confirmation without changing anything."""
    tr = await _translator_for(update, context)
    await reply(update, tr.gettext("OK, nothing has changed."), reply_markup=ReplyKeyboardRemove())


async def nothing_to_cancel(update: Update, context: BotContext) -> None:
    """``/cancel`` when no question is open (or it timed out): say so."""
    tr = await _translator_for(update, context)
    # TRANSLATORS: answer to /cancel when no question of the bot is waiting for an answer.
    await reply(
        update, tr.gettext("There is nothing to cancel."), reply_markup=ReplyKeyboardRemove()
    )


def _calendar_item(reminder: Reminder, zone: ZoneInfo) -> PlanItem:
    return PlanItem(
        Kind(reminder.kind),
        reminder.occurrence,
        reminder.local_date,
        reminder.due_at.astimezone(zone),
        reminder.course,
        reminder.about,
    )


async def calendar_command(update: Update, context: BotContext) -> None:
    """``/calendar``: the unsent reminders as an ``.ics`` file."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
        reminders = (
            await patient_data.unsent_reminders(session, patient_id=patient.id) if patient else []
        )
    if patient is None or update.effective_chat is None:
        await _refuse(update, context)
        return
    tr = translator(patient.locale)
    if not reminders:
        await reply(update, tr.gettext("You have no upcoming reminders."))
        return
    zone = ZoneInfo(patient.timezone)
    # UIDs are per patient and reminder, so importing a newer file updates the events; the
    # label stays out of the file.
    ics = plan_calendar(
        [_calendar_item(reminder, zone) for reminder in reminders],
        tr=tr,
        cervix=patient.cervix,
        stamp=context.clock.now(),
        uid_scope=f"patient-{patient.id}",
    )
    await update.effective_chat.send_document(
        document=ics,
        filename="reminders.ics",
        caption=tr.gettext(
            "Your upcoming reminders as a calendar file. Open it to add them to your "
            "calendar; opening a newer file updates them."
        ),
    )


def _yes_no(value: bool, tr: Translator) -> str:
    # TRANSLATORS: an answer in the /mydata summary ("Contraception reminders: yes").
    return tr.gettext("yes") if value else tr.gettext("no")


def _mydata_summary(patient: Patient, data: dict[str, Any], tr: Translator) -> str:
    zone = ZoneInfo(patient.timezone)
    statuses = [reminder["status"] for reminder in data["reminders"]]
    sent = sum(status in {ReminderStatus.SENT, ReminderStatus.ACKNOWLEDGED} for status in statuses)
    waiting = sum(status in UNSENT for status in statuses)
    lines = [
        # TRANSLATORS: %(label)s is the pseudonym the clinic uses for the patient.
        tr.gettext("Label from your clinic: %(label)s") % {"label": patient.label},
        tr.gettext("Language: %(language)s") % {"language": _language_name(patient.locale)},
        tr.gettext("Time zone: %(timezone)s") % {"timezone": patient.timezone},
        tr.gettext("Reminder time: %(time)s") % {"time": tr.time(patient.send_time)},
        tr.gettext("Contraception reminders: %(answer)s") % {"answer": _yes_no(patient.cbp, tr)},
        tr.gettext("Cervical screening reminders: %(answer)s")
        % {"answer": _yes_no(patient.cervix, tr)},
        tr.gettext("Telegram chat ID: %(chat_id)s") % {"chat_id": patient.chat_id},
    ]
    lines += [
        # TRANSLATORS: one line per treatment course; %(date)s is its first day.
        tr.ngettext(
            "Treatment course %(number)d: %(date)s, %(days)d infusion day",
            "Treatment course %(number)d: %(date)s, %(days)d infusion days",
            course.days,
        )
        % {"number": course.number, "date": tr.date(course.start), "days": course.days}
        for course in patient.courses
    ]
    lines += [
        tr.gettext("Consent given on %(date)s")
        % {"date": tr.date(datetime.fromisoformat(consent["accepted_at"]).astimezone(zone).date())}
        for consent in data["consents"]
    ]
    lines += [
        tr.ngettext("%(count)d reminder sent", "%(count)d reminders sent", sent) % {"count": sent},
        tr.ngettext("%(count)d reminder planned", "%(count)d reminders planned", waiting)
        % {"count": waiting},
    ]
    return "\n".join(
        [
            tr.gettext("What is stored about you:"),
            "\n".join(f"• {line}" for line in lines),
            "",
            tr.gettext("The file below has all of it, including the history of each reminder."),
        ]
    )


async def mydata_command(update: Update, context: BotContext) -> None:
    """``/mydata``: a summary of what is stored, and all of it as a JSON file (also after
    ``/stop``: the data is still there)."""
    async with reading(context.sessions) as session:
        patient = await patient_of_chat(session, update)
        data = await patient_data.export(session, patient_id=patient.id) if patient else None
    if patient is None or data is None or update.effective_chat is None:
        await _refuse(update, context)
        return
    tr = translator(patient.locale)
    await reply(update, _mydata_summary(patient, data, tr))
    document = {"exported_at": context.clock.now().isoformat(), **data}
    await update.effective_chat.send_document(
        document=json.dumps(document, ensure_ascii=False, indent=2).encode(),
        filename="mydata.json",
        caption=tr.gettext("Everything stored about you."),
    )


def _confirm_keyboard(yes: tuple[str, str], no: tuple[str, str]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in (yes, no)]]
    )


async def stop_command(update: Update, context: BotContext) -> None:
    """``/stop``: ask before withdrawing consent."""
    async with reading(context.sessions) as session:
        patient = await current_patient(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    await dialogues.keep(update, context, dialogues.STOP, patient_id=patient.id)
    tr = translator(patient.locale)
    await reply(
        update,
        "\n".join(
            [
                tr.gettext("Stop all reminders?"),
                tr.gettext(
                    "Your consent will be withdrawn, every pending reminder cancelled and "
                    "your care team told. Your data is kept; to have it erased, send /forget."
                ),
            ]
        ),
        reply_markup=_confirm_keyboard(
            # TRANSLATORS: button: confirm stopping all reminders.
            (tr.gettext("Yes, stop"), STOP_CONFIRM),
            # TRANSLATORS: button: do not stop the reminders.
            (tr.gettext("No, keep them"), STOP_KEEP),
        ),
    )


async def stop_confirmed(update: Update, context: BotContext) -> None:
    """ "Yes, stop": withdraw consent, cancel every pending reminder, alert the coordinator."""
    query = update.callback_query
    if query is None or not await _confirmed(update, context, dialogues.STOP):
        return
    await query.answer()
    if not _own_chat(update):
        return
    await _remove_buttons(update)
    now = context.clock.now()
    async with context.sessions.begin() as session:
        patient = await current_patient(session, update)
        if patient is not None:
            await store.withdraw(
                session,
                patient_id=patient.id,
                actor=f"patient:{patient.id}",
                now=now,
                by_patient=True,
                alert_chat_id=context.dispatcher.alert_chat_id,
            )
    if patient is None:
        await _refuse(update, context)
        return
    tr = translator(patient.locale)
    await send_alerts_now(context, patient.id)
    async with reading(context.sessions) as session:
        told = await alert_reached(
            session, patient_id=patient.id, kind=AlertKind.WITHDRAWN, since=now
        )
    await reply(
        update,
        tr.gettext(
            "Your reminders have stopped and your consent is withdrawn. We have told your "
            "care team. If you want reminders again, ask them for a new invite."
        )
        if told
        # TRANSLATORS: after /stop, when the care team could not be told yet.
        else tr.gettext(
            "Your reminders have stopped and your consent is withdrawn. If you want "
            "reminders again, ask your care team for a new invite."
        ),
    )


async def forget_command(update: Update, context: BotContext) -> None:
    """``/forget``: ask before withdrawing and erasing (also after ``/stop``)."""
    async with reading(context.sessions) as session:
        patient = await patient_of_chat(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    await dialogues.keep(update, context, dialogues.FORGET, patient_id=patient.id)
    tr = translator(patient.locale)
    await reply(
        update,
        "\n".join(
            [
                tr.gettext("Erase your data?"),
                # TRANSLATORS: anonymous counts: how many reminders were delivered, with
                # nothing that points to the patient.
                tr.gettext(
                    "Your reminders stop and your consent is withdrawn. Everything stored "
                    "about you is deleted: your label, Telegram chat ID, course dates, "
                    "settings and the history of your reminders. This cannot be undone. "
                    "Only anonymous counts of delivered reminders remain."
                ),
            ]
        ),
        reply_markup=_confirm_keyboard(
            # TRANSLATORS: button: confirm erasing the patient's data.
            (tr.gettext("Yes, erase"), FORGET_CONFIRM),
            # TRANSLATORS: button: do not erase anything.
            (tr.gettext("No, keep it"), FORGET_KEEP),
        ),
    )


async def forget_confirmed(update: Update, context: BotContext) -> None:
    """ "Yes, erase": withdraw, erase, and tell the coordinator."""
    query = update.callback_query
    if query is None or not await _confirmed(update, context, dialogues.FORGET):
        return
    await query.answer()
    if not _own_chat(update):
        return
    await _remove_buttons(update)
    async with context.sessions.begin() as session:
        patient = await patient_of_chat(session, update)
        erased = (
            await patient_data.erase(
                session,
                patient_id=patient.id,
                actor=f"user:{patient.chat_id}",
                now=context.clock.now(),
            )
            if patient is not None
            else None
        )
    if erased is None:
        await _refuse(update, context)
        return
    tr = translator(erased.locale)
    told = await tell_team_of_erasure(context, erased)
    await reply(
        update,
        tr.gettext(
            "Your data has been erased and you will get no more reminders. We have told "
            "your care team. Thank you for using this service."
        )
        if told
        # TRANSLATORS: after /forget, when the care team could not be told.
        else tr.gettext(
            "Your data has been erased and you will get no more reminders. Thank you for "
            "using this service."
        ),
    )


async def confirmation_declined(update: Update, context: BotContext) -> None:
    """ "No, keep": nothing changes."""
    query = update.callback_query
    name = dialogues.STOP if query is not None and query.data == STOP_KEEP else dialogues.FORGET
    if query is None or not await _confirmed(update, context, name):
        return
    await query.answer()
    if not _own_chat(update):
        return
    async with reading(context.sessions) as session:
        patient = await patient_of_chat(session, update)
    if patient is None:
        await _refuse(update, context)
        return
    await _remove_buttons(update)
    tr = translator(patient.locale)
    await reply(update, tr.gettext("OK, nothing has changed."))


def conversations() -> dialogues.Conversations:
    """/time and /timezone take the next typed message as their answer; /cancel leaves
    them and the patient's confirmations."""
    return dialogues.Conversations(
        answers={dialogues.TIME: time_received, dialogues.TIMEZONE: timezone_received},
        cancels={
            name: cancel
            for name in (
                dialogues.TIME,
                dialogues.TIMEZONE,
                dialogues.LANGUAGE,
                dialogues.STOP,
                dialogues.FORGET,
            )
        },
    )


def handlers() -> Handlers:
    """The patient's commands and buttons."""
    return [
        CommandHandler("start", start, filters=PRIVATE),
        CommandHandler("help", help_command, filters=PRIVATE),
        CallbackQueryHandler(consent_accept, pattern=f"^{CONSENT_ACCEPT}$"),
        CallbackQueryHandler(consent_decline, pattern=f"^{CONSENT_DECLINE}$"),
        CommandHandler("next", next_command, filters=PRIVATE),
        CommandHandler("time", time_command, filters=PRIVATE),
        CommandHandler("timezone", timezone_command, filters=PRIVATE),
        CommandHandler("language", language_command, filters=PRIVATE),
        CallbackQueryHandler(language_chosen, pattern=f"^{LANGUAGE}"),
        CommandHandler("calendar", calendar_command, filters=PRIVATE),
        CommandHandler("mydata", mydata_command, filters=PRIVATE),
        CommandHandler("stop", stop_command, filters=PRIVATE),
        CallbackQueryHandler(stop_confirmed, pattern=f"^{STOP_CONFIRM}$"),
        # "/forget LABEL" is the coordinators' (bot.handlers.coordinator).
        CommandHandler("forget", forget_command, filters=PRIVATE & ~WITH_ARGUMENT),
        CallbackQueryHandler(forget_confirmed, pattern=f"^{FORGET_CONFIRM}$"),
        CallbackQueryHandler(confirmation_declined, pattern=f"^({STOP_KEEP}|{FORGET_KEEP})$"),
    ]

"""What a patient does in their private chat with the bot."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import messages
from bot.auth import allows, role_of
from bot.context import BotContext
from bot.handlers.common import PRIVATE, Handlers, reply, user_translator
from bot.i18n import Translator, translator
from bot.texts import KIND_TITLES
from scheduler import store
from scheduler.models import Patient, PatientStatus, Reminder, Role
from scheduler.protocol import Kind

INVITE_KEY = "invite_token"
CONSENT_ACCEPT = "consent:accept"
CONSENT_DECLINE = "consent:decline"
AGENDA_SIZE = 5


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
        if invite is None or token is None:
            await reply(update, _ask_care_team(user_translator(user, context)))
            return
        invited = await session.get(Patient, invite.patient_id)
        assert invited is not None
    assert context.user_data is not None
    context.user_data[INVITE_KEY] = token
    tr = translator(invited.locale)
    await reply(update, messages.consent_text(tr), reply_markup=_consent_keyboard(tr))


async def consent_accept(update: Update, context: BotContext) -> None:
    """The patient agrees: record consent, start their reminders, show what comes next."""
    query = update.callback_query
    chat = update.effective_chat
    user = update.effective_user
    if query is None or chat is None or user is None or context.user_data is None:
        return
    await query.answer()
    if chat.id != user.id:  # only ever the presser's own private chat
        return
    token = context.user_data.get(INVITE_KEY)
    now = context.clock.now()
    async with context.sessions.begin() as session:
        invite = await store.find_invite(session, token=token, now=now) if token else None
        if invite is None:
            await reply(update, _ask_care_team(user_translator(update.effective_user, context)))
            return
        if await store.patient_by_chat(session, chat_id=chat.id) is not None:
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
            text=messages.consent_text(tr),
            locale=invited.locale,
            now=now,
        )
        coming = await store.upcoming(session, patient_id=patient.id, limit=3)
    context.user_data.pop(INVITE_KEY, None)
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
    token = context.user_data.get(INVITE_KEY) if context.user_data else None
    async with context.sessions() as session:
        invite = (
            await store.find_invite(session, token=token, now=context.clock.now())
            if token
            else None
        )
        invited = await session.get(Patient, invite.patient_id) if invite else None
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
        patient = await patient_of_chat(session, update)
    if patient is not None and patient.status != PatientStatus.WITHDRAWN:
        tr = translator(patient.locale)
        await reply(
            update,
            "\n".join(
                [
                    tr.gettext("What you can do:"),
                    tr.gettext("/next: your next reminders"),
                    tr.gettext("/time: change the time of your reminders"),
                    tr.gettext("/timezone: change your time zone"),
                    tr.gettext("/language: change the language"),
                    tr.gettext("/calendar: your reminders as a calendar file"),
                    tr.gettext("/mydata: what is stored about you"),
                    tr.gettext("/stop: stop all reminders"),
                    tr.gettext("/forget: stop and erase your data"),
                    "",
                    tr.gettext(messages.FOOTER),
                ]
            ),
        )
        return
    tr = user_translator(update.effective_user, context)
    role = await role_of(update, context)
    if role is None:
        await reply(
            update,
            tr.gettext(
                "This bot sends treatment reminders to patients invited by their care team. "
                "Please ask your care team for an invite."
            ),
        )
        return
    await reply(update, staff_help(role, tr))


def staff_help(role: Role, tr: Translator) -> str:
    """The commands ``role`` may use."""
    lines = [
        tr.gettext("Staff commands:"),
        tr.gettext("/deliveries [LABEL] [STATUS]: the delivery log"),
    ]
    if allows(role, Role.COORDINATOR):
        lines += [
            tr.gettext("/enroll: enrol a patient"),
            tr.gettext("/course LABEL DATE [DAYS]: record a course"),
            tr.gettext("/patients: all patients"),
            tr.gettext("/patient LABEL: one patient"),
            tr.gettext("/pause LABEL, /resume LABEL: stop or restart reminders"),
            tr.gettext("/invite LABEL: a new invite link"),
        ]
    if allows(role, Role.ADMIN):
        lines += [
            tr.gettext("/grant USER_ID ROLE: give a staff role"),
            tr.gettext("/revoke USER_ID: remove a staff role"),
        ]
    return "\n".join(lines)


def handlers() -> Handlers:
    """The patient's commands and buttons."""
    return [
        CommandHandler("start", start, filters=PRIVATE),
        CommandHandler("help", help_command, filters=PRIVATE),
        CallbackQueryHandler(consent_accept, pattern=f"^{CONSENT_ACCEPT}$"),
        CallbackQueryHandler(consent_decline, pattern=f"^{CONSENT_DECLINE}$"),
    ]

"""Care coordinators: enrolment, courses, patients, invites.

``/enroll`` is a conversation, one question per step; every answer, typed or pressed, goes
through the same validation as ``remindbot enroll`` and a bad one is asked again with the
reason. The answers live in the conversation's row (``bot.dialogues``) until the coordinator
confirms, cancels or stops answering for ``ENROL_TIMEOUT``; no patient is stored before the
confirmation.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from datetime import date, datetime, time, timedelta
from enum import IntEnum
from typing import Any, Final

from babel import Locale, UnknownLocaleError
from babel.numbers import format_percent
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.ext import CallbackQueryHandler, CommandHandler

from bot import dialogues, messages, timezones
from bot.auth import requires
from bot.context import BotContext
from bot.handlers.common import (
    PRIVATE,
    WITH_ARGUMENT,
    Handlers,
    reply,
    user_translator,
    viewer_zone,
    when,
)
from bot.handlers.patient import agenda
from bot.i18n import Translator, available_locales, translator
from bot.invites import invite_link, qr_png
from bot.texts import KIND_TITLES
from scheduler import coordination, patient_data, store, teams
from scheduler.coordination import Adherence
from scheduler.dialogues import Open
from scheduler.errors import N_, CourseTooEarly, TooManyCourses, ValidationError
from scheduler.models import Course, Patient
from scheduler.outbox import Action
from scheduler.protocol import (
    EARLIEST_SEND_TIME,
    EU_MAX_COURSES,
    LATEST_SEND_TIME,
    Kind,
)
from scheduler.statuses import PatientStatus, Role
from scheduler.validation import (
    CourseSpec,
    build_courses,
    build_profile,
    check_locale,
    default_course_days,
    parse_course_days,
    parse_date,
    parse_send_time,
)

# What a step of the enrolment returns when the conversation is over.
ENDED: Final = -1
# An enrolment left unanswered this long ends, and nothing is saved.
ENROL_TIMEOUT = timedelta(minutes=15)
PAGE_SIZE = 10
COMMON_TIMEZONES = ("Europe/Berlin", "Europe/London", "Europe/Paris", "America/New_York")
# Offered before the common ones: this many zones of the patient's language.
REGION_TIMEZONES = 6
SEND_TIMES = (time(8), time(9), time(12), time(18))
UPCOMING = 5

# Callback data: "enrol:<step>:<answer>", "course:early:confirm|cancel", "patients:page:<n>".
ENROL = "enrol"
COURSE_CONFIRM = "course:early:confirm"
COURSE_CANCEL = "course:early:cancel"
ERASE = "erase:"  # + the patient id
ERASE_CANCEL = "erase:cancel"
PATIENTS_PAGE = "patients:page:"
PREVIOUS, NEXT = "◀", "▶"


class Step(IntEnum):
    """The states of the enrolment conversation, in the order they are asked."""

    LABEL = 0
    LANGUAGE = 1
    TIMEZONE = 2
    SEND_TIME = 3
    CBP = 4
    CERVIX = 5
    COURSE1_START = 6
    COURSE1_DAYS = 7
    COURSE2_START = 8
    EARLY = 9
    COURSE2_DAYS = 10
    SUMMARY = 11
    EDIT = 12


# The part of the callback data that names the step a button answers.
BUTTON_KEYS: Final = {
    Step.LANGUAGE: "lang",
    Step.TIMEZONE: "tz",
    Step.SEND_TIME: "time",
    Step.CBP: "cbp",
    Step.CERVIX: "cervix",
    Step.COURSE1_DAYS: "days1",
    Step.COURSE2_START: "course2",
    Step.EARLY: "early",
    Step.COURSE2_DAYS: "days2",
    Step.SUMMARY: "summary",
    Step.EDIT: "edit",
}
_FOLLOWING: Final = {
    Step.LABEL: Step.LANGUAGE,
    Step.LANGUAGE: Step.TIMEZONE,
    Step.TIMEZONE: Step.SEND_TIME,
    Step.SEND_TIME: Step.CBP,
    Step.CBP: Step.CERVIX,
    Step.CERVIX: Step.COURSE1_START,
    Step.COURSE1_START: Step.COURSE1_DAYS,
    Step.COURSE1_DAYS: Step.COURSE2_START,
    Step.COURSE2_START: Step.COURSE2_DAYS,
    Step.EARLY: Step.COURSE2_DAYS,
    Step.COURSE2_DAYS: Step.SUMMARY,
}
# What the Edit menu offers, and the step each choice starts again from.
EDITABLE: Final = {
    "label": Step.LABEL,
    "language": Step.LANGUAGE,
    "timezone": Step.TIMEZONE,
    "send_time": Step.SEND_TIME,
    "cbp": Step.CBP,
    "cervix": Step.CERVIX,
    "courses": Step.COURSE1_START,
}

STATUS_NAMES: Final = {
    # TRANSLATORS: patient status: enrolled, has not accepted the invite yet.
    PatientStatus.INVITED: N_("invited"),
    # TRANSLATORS: patient status: gets reminders.
    PatientStatus.ACTIVE: N_("active"),
    # TRANSLATORS: patient status: reminders stopped by a coordinator.
    PatientStatus.PAUSED: N_("paused"),
    # TRANSLATORS: patient status: the patient blocked the bot or deleted their account.
    PatientStatus.UNREACHABLE: N_("unreachable"),
    # TRANSLATORS: patient status: the patient withdrew consent.
    PatientStatus.WITHDRAWN: N_("withdrawn"),
}
# A patient's answer to a reminder, named as the button they pressed.
ACTION_NAMES: Final = {
    Action.DONE: messages.DONE,
    Action.SNOOZE: messages.SNOOZE,
    Action.SYMPTOMS: messages.SYMPTOMS,
    Action.OK: messages.IM_OK,
}


class AnswerYesOrNo(ValidationError):
    # TRANSLATORS: shown to coordinators who typed something else than Yes or No.
    template = N_("Please answer Yes or No.")


class UseTheButtons(ValidationError):
    # TRANSLATORS: shown to coordinators who typed text where buttons are expected.
    template = N_("Please choose one of the buttons below.")


@dataclass
class Draft:
    """The answers of one enrolment conversation so far."""

    label: str | None = None
    locale: str | None = None
    timezone: str | None = None
    send_time: time | None = None
    cbp: bool = False
    cervix: bool = False
    course1_start: date | None = None
    course1_days: int | None = None
    course2_start: date | None = None
    course2_days: int | None = None
    allow_early: bool = False
    too_early: CourseTooEarly | None = None
    # Set once the summary was shown: an answer then goes back to the summary.
    editing: bool = False
    # The care team the patient joins, chosen when /enroll starts.
    team_id: int | None = None
    team_name: str = ""

    def to_data(self) -> dict[str, Any]:
        """The answers as JSON values, for the conversation's row."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "too_early"}
        for name in ("course1_start", "course2_start"):
            data[name] = data[name].isoformat() if data[name] else None
        data["send_time"] = self.send_time.strftime("%H:%M") if self.send_time else None
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Draft:
        """The answers from ``to_data``; a course 2 not yet confirmed as early is checked
        again, to ask about it the same way."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        values.pop("too_early", None)
        for name in ("course1_start", "course2_start"):
            if values.get(name):
                values[name] = date.fromisoformat(values[name])
        if values.get("send_time"):
            values["send_time"] = time.fromisoformat(values["send_time"])
        draft = cls(**values)
        if draft.course1_start and draft.course2_start and not draft.allow_early:
            try:
                build_courses(
                    [(draft.course1_start, draft.course1_days), (draft.course2_start, None)]
                )
            except CourseTooEarly as error:
                draft.too_early = error
        return draft

    def courses(self) -> list[CourseSpec]:
        specs: list[CourseSpec] = []
        if self.course1_start is not None:
            specs.append((self.course1_start, self.course1_days))
        if self.course2_start is not None:
            specs.append((self.course2_start, self.course2_days))
        return specs


# --- shared helpers ------------------------------------------------------------------------


def _tr(update: Update, context: BotContext) -> Translator:
    return user_translator(update.effective_user, context)


def _yes_no(value: bool, tr: Translator) -> str:
    return tr.gettext("Yes") if value else tr.gettext("No")


def _language_name(code: str) -> str:
    """The language's own name, e.g. "Deutsch" for de."""
    try:
        name = Locale.parse(code).get_display_name(code) or code
    except (ValueError, UnknownLocaleError):
        return code
    return name[:1].upper() + name[1:]


def _status(status: str, tr: Translator) -> str:
    try:
        return tr.gettext(STATUS_NAMES[PatientStatus(status)])
    except ValueError:
        return status


def _adherence(adherence: Adherence, tr: Translator) -> str:
    ratio = adherence.ratio
    if ratio is None:
        # TRANSLATORS: adherence of a patient who has not been sent any test reminder yet.
        return tr.gettext("no tests yet")
    return format_percent(ratio, locale=tr.locale)


def _course_line(number: int, start: date, days: int, tr: Translator) -> str:
    return tr.ngettext(
        "Course %(number)d: %(date)s, %(days)d infusion day",
        "Course %(number)d: %(date)s, %(days)d infusion days",
        days,
    ) % {"number": number, "date": tr.date(start), "days": days}


def _keyboard(*rows: list[tuple[str, str]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(text, callback_data=data) for text, data in row] for row in rows]
    )


def _button(step: Step, answer: str) -> str:
    return f"{ENROL}:{BUTTON_KEYS[step]}:{answer}"


async def _drop_keyboard(query: CallbackQuery) -> None:
    """Take the buttons off the message that was answered, so they cannot be pressed twice."""
    if isinstance(query.message, Message) and query.message.reply_markup is not None:
        await query.edit_message_reply_markup(reply_markup=None)


async def _send(update: Update, text: str, markup: InlineKeyboardMarkup | None) -> Message | None:
    chat = update.effective_chat
    return await chat.send_message(text, reply_markup=markup) if chat else None


async def _scope(session: AsyncSession, update: Update) -> teams.Scope:
    """The teams whose patients the user may see and act on (``teams.scope_of``)."""
    user = update.effective_user
    if user is None:
        return teams.Scope(frozenset())
    return await teams.scope_of(session, user_id=user.id)


async def _patient(session: AsyncSession, update: Update, label: str) -> Patient | None:
    """The patient with ``label`` if they are in one of the user's teams: a patient of
    another team gets the same answer as a label that does not exist."""
    return await store.patient_by_label(session, label=label, scope=await _scope(session, update))


def _label_argument(context: BotContext) -> str | None:
    return context.args[0] if context.args and len(context.args) == 1 else None


async def _send_invite(
    update: Update,
    context: BotContext,
    tr: Translator,
    *,
    label: str,
    token: str,
    expires_at: datetime,
    intro: str,
) -> None:
    """The invite link as text, then its QR code as a photo; the expiry in the
    coordinator's zone: it is they who hand the invite on in time."""
    chat = update.effective_chat
    if chat is None:
        return
    link = invite_link(context.bot.username, token)
    zone = await viewer_zone(context, update.effective_user)
    lines = [
        intro,
        # TRANSLATORS: followed by the invite link on the next line.
        tr.gettext("Invite link for %(label)s (single use, valid until %(expires)s):")
        % {"label": label, "expires": when(expires_at, zone, tr)},
        link,
    ]
    await chat.send_message("\n".join(lines))
    await chat.send_photo(
        qr_png(link),
        # TRANSLATORS: caption of the invite QR code, to print or show the patient.
        caption=tr.gettext("Invite QR code for %(label)s.") % {"label": label},
    )


# --- /enroll: the questions ------------------------------------------------------------------


def _question(step: Step, draft: Draft, tr: Translator) -> tuple[str, InlineKeyboardMarkup | None]:
    """The text and buttons that ask for ``step``."""
    match step:
        case Step.LABEL:
            # TRANSLATORS: the label is the clinic's pseudonym for a patient.
            text = tr.gettext(
                "What is the patient's label? Use the clinic's pseudonym, never the patient's name."
            )
            return text, None
        case Step.LANGUAGE:
            codes = sorted(available_locales())
            text = tr.gettext(
                "Which language should the patient's messages be in? "
                "Choose one or send its code (%(codes)s)."
            ) % {"codes": ", ".join(codes)}
            buttons = [(_language_name(code), _button(step, code)) for code in codes]
            return text, _keyboard(*(buttons[i : i + 3] for i in range(0, len(buttons), 3)))
        case Step.TIMEZONE:
            # TRANSLATORS: keep "Europe/Vienna": it is a technical name. "Vienna" may be
            # written as in this language.
            text = tr.gettext(
                "Which time zone does the patient live in? Choose one, or send a city in it "
                "or its name, for example Vienna or Europe/Vienna."
            )
            offered = timezones.offered(
                draft.locale or tr.locale, COMMON_TIMEZONES, regional=REGION_TIMEZONES
            )
            return text, _keyboard(
                *([(timezones.with_id(zone, tr.locale), _button(step, zone))] for zone in offered)
            )
        case Step.SEND_TIME:
            text = tr.gettext(
                "At what local time should the reminders arrive? "
                "Choose one or send HH:MM between %(earliest)s and %(latest)s."
            ) % {
                "earliest": EARLIEST_SEND_TIME.strftime("%H:%M"),
                "latest": LATEST_SEND_TIME.strftime("%H:%M"),
            }
            times = [(tr.time(at), _button(step, at.strftime("%H:%M"))) for at in SEND_TIMES]
            return text, _keyboard(times)
        case Step.CBP:
            text = tr.gettext(
                "Can the patient become pregnant? If yes, they also get contraception reminders."
            )
            return text, _keyboard(
                [(tr.gettext("Yes"), _button(step, "yes")), (tr.gettext("No"), _button(step, "no"))]
            )
        case Step.CERVIX:
            # TRANSLATORS: asked at enrolment, after the pregnancy question. Not every
            # patient with a cervix can become pregnant.
            text = tr.gettext(
                "Does the patient have a cervix? If yes, the yearly reminder also asks for "
                "cervical screening."
            )
            return text, _keyboard(
                [(tr.gettext("Yes"), _button(step, "yes")), (tr.gettext("No"), _button(step, "no"))]
            )
        case Step.COURSE1_START:
            text = tr.gettext(
                "On which date does course 1 start (its first infusion day)? Send it as YYYY-MM-DD."
            )
            return text, None
        case Step.COURSE1_DAYS | Step.COURSE2_DAYS:
            number = 1 if step == Step.COURSE1_DAYS else 2
            usual = default_course_days(number)
            text = tr.gettext(
                "How many infusion days does course %(number)d have? "
                "Usually %(days)d; send another number from 1 to 5 if needed."
            ) % {"number": number, "days": usual}
            return text, _keyboard([(str(usual), _button(step, str(usual)))])
        case Step.COURSE2_START:
            text = tr.gettext(
                "Is course 2 already planned? Send its first infusion day as YYYY-MM-DD, or skip."
            )
            # TRANSLATORS: button: no second course is planned yet.
            return text, _keyboard([(tr.gettext("Skip"), _button(step, "skip"))])
        case Step.EARLY:
            text = draft.too_early.render(tr.gettext) if draft.too_early else ""
            return text, _keyboard(
                [
                    (tr.gettext("Confirm early course"), _button(step, "confirm")),
                    (tr.gettext("Change date"), _button(step, "change")),
                ]
            )
        case Step.SUMMARY:
            return _summary(draft, tr), _keyboard(
                [
                    (tr.gettext("Confirm"), _button(step, "confirm")),
                    (tr.gettext("Edit"), _button(step, "edit")),
                    (tr.gettext("Cancel"), _button(step, "cancel")),
                ]
            )
        case Step.EDIT:
            names = {
                # TRANSLATORS: button: the patient's pseudonym, to be entered again.
                "label": tr.gettext("Label"),
                "language": tr.gettext("Language"),
                "timezone": tr.gettext("Time zone"),
                "send_time": tr.gettext("Send time"),
                # TRANSLATORS: short button: whether the patient can become pregnant.
                "cbp": tr.gettext("Pregnancy"),
                # TRANSLATORS: short button: whether the patient has a cervix.
                "cervix": tr.gettext("Cervix"),
                "courses": tr.gettext("Courses"),
            }
            choices = [(names[field], _button(step, field)) for field in EDITABLE]
            return tr.gettext("What do you want to change?"), _keyboard(
                choices[0:3],
                choices[3:5],
                choices[5:7],
                # TRANSLATORS: button: back to the summary without changing anything.
                [(tr.gettext("Back"), _button(step, "back"))],
            )
    raise AssertionError(step)


def _summary(draft: Draft, tr: Translator) -> str:
    assert draft.label is not None
    assert draft.locale is not None
    assert draft.timezone is not None
    assert draft.send_time is not None
    lines = [
        tr.gettext("Please check the enrolment:"),
        tr.gettext("Label: %(label)s") % {"label": draft.label},
        tr.gettext("Team: %(team)s") % {"team": draft.team_name},
        tr.gettext("Language: %(language)s")
        % {"language": f"{_language_name(draft.locale)} ({draft.locale})"},
        tr.gettext("Time zone: %(timezone)s")
        % {"timezone": timezones.with_id(draft.timezone, tr.locale)},
        tr.gettext("Send time: %(time)s") % {"time": tr.time(draft.send_time)},
        tr.gettext("Can become pregnant: %(answer)s") % {"answer": _yes_no(draft.cbp, tr)},
        tr.gettext("Has a cervix: %(answer)s") % {"answer": _yes_no(draft.cervix, tr)},
    ]
    courses, _ = build_courses(draft.courses(), allow_early=True)
    for number, course in enumerate(courses, start=1):
        lines.append(_course_line(number, course.start, course.days, tr))
    if len(courses) < 2:
        lines.append(tr.gettext("Course 2: not planned yet"))
    elif draft.allow_early:
        lines.append(tr.gettext("Course 2 starts early: override confirmed."))
    return "\n".join(lines)


async def _ask(
    update: Update,
    context: BotContext,
    draft: Draft,
    step: Step,
    tr: Translator,
    before: str = "",
) -> Step:
    """Ask for ``step``, after ``before``: why the last answer was refused, or an intro.

    The conversation is stored at ``step`` first: the answer may reach another replica
    as soon as the question is out."""
    await dialogues.keep(
        update,
        context,
        dialogues.ENROL,
        step=step.name,
        data={**draft.to_data(), "ui": tr.locale},
        lasts=ENROL_TIMEOUT,
    )
    text, markup = _question(step, draft, tr)
    await _send(update, f"{before}\n\n{text}" if before else text, markup)
    return step


# --- /enroll: the answers ----------------------------------------------------------------------

Setter = Callable[[Draft, str, Translator, BotContext], Awaitable[Step | None]]


async def _answer_text(update: Update, step: Step) -> str:
    """What was typed, or the answer a pressed button stands for."""
    query = update.callback_query
    if query is not None:
        await query.answer()
        await _drop_keyboard(query)
        return (query.data or "").removeprefix(f"{ENROL}:{BUTTON_KEYS[step]}:")
    return (update.message.text or "") if update.message else ""


async def _answer(
    update: Update, context: BotContext, step: Step, draft: Draft, tr: Translator
) -> int:
    """Record the answer to ``step`` and ask the next question, or ask again with the reason."""
    value = await _answer_text(update, step)
    if step == Step.SUMMARY:
        return await _summary_answer(update, context, draft, value, tr)
    setter = SETTERS[step]
    try:
        following = await setter(draft, value, tr, context)
    except ValidationError as error:
        return await _ask(update, context, draft, step, tr, before=error.render(tr.gettext))
    if following is None:
        following = (
            Step.SUMMARY if draft.editing and step < Step.COURSE1_START else _FOLLOWING[step]
        )
    return await _ask(update, context, draft, following, tr)


async def _set_label(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    label = store.check_label(value)
    async with context.sessions() as session:
        if await coordination.label_in_use(session, label=label):
            raise store.LabelTaken(label=label)
    draft.label = label


async def _set_language(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    shipped = {code.casefold(): code for code in available_locales()}
    draft.locale = check_locale(shipped.get(value.strip().casefold(), value), shipped.values())


async def _set_timezone(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    # A pressed button's id goes through the parser like a typed city.
    draft.timezone = timezones.parse(value, tr.locale, ids=True).key


async def _set_send_time(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.send_time = parse_send_time(value)


def _yes_or_no(value: str, tr: Translator) -> bool:
    answer = value.strip().casefold()
    if answer in {"yes", tr.gettext("Yes").casefold()}:
        return True
    if answer in {"no", tr.gettext("No").casefold()}:
        return False
    raise AnswerYesOrNo()


async def _set_cbp(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.cbp = _yes_or_no(value, tr)


async def _set_cervix(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.cervix = _yes_or_no(value, tr)


async def _set_course1_start(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.course1_start = parse_date(value)


async def _set_course1_days(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.course1_days = parse_course_days(value, number=1)


async def _set_course2_start(
    draft: Draft, value: str, tr: Translator, context: BotContext
) -> Step | None:
    draft.course2_start = draft.course2_days = draft.too_early = None
    draft.allow_early = False
    if value.strip().casefold() in {"skip", tr.gettext("Skip").casefold()}:
        return Step.SUMMARY
    start = parse_date(value)
    assert draft.course1_start is not None
    try:
        build_courses([(draft.course1_start, draft.course1_days), (start, None)])
    except CourseTooEarly as error:
        draft.course2_start, draft.too_early = start, error
        return Step.EARLY
    draft.course2_start = start
    return None


async def _set_early(draft: Draft, value: str, tr: Translator, context: BotContext) -> Step | None:
    if value == "confirm" and draft.course2_start is not None:
        draft.allow_early, draft.too_early = True, None
        return None
    if value == "change":
        draft.course2_start = draft.too_early = None
        return Step.COURSE2_START
    raise UseTheButtons()


async def _set_course2_days(draft: Draft, value: str, tr: Translator, context: BotContext) -> None:
    draft.course2_days = parse_course_days(value, number=2)


async def _set_edit(draft: Draft, value: str, tr: Translator, context: BotContext) -> Step:
    if value == "back":
        return Step.SUMMARY
    if value not in EDITABLE:
        raise UseTheButtons()
    draft.editing = True
    if value == "courses":
        draft.course2_start = draft.course2_days = draft.too_early = None
        draft.allow_early = False
    return EDITABLE[value]


@requires(Role.COORDINATOR)
async def enroll(update: Update, context: BotContext) -> None:
    """``/enroll [TEAM]``: start enrolling a patient (starts over if one was under way) into
    the coordinator's team; one in several teams names it."""
    tr = _tr(update, context)
    name = " ".join(context.args) if context.args else None
    try:
        async with context.sessions() as session:
            team = await teams.enrolment_team(
                session, name=name, scope=await _scope(session, update)
            )
    except teams.ChooseTeam as error:
        await reply(
            update,
            "\n".join(
                [
                    error.render(tr.gettext),
                    tr.gettext("Send /enroll TEAM, for example /enroll %(team)s.")
                    % {"team": str(error.params["teams"]).split(", ")[0]},
                ]
            ),
        )
        return
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    draft = Draft(team_id=team.id, team_name=team.name)
    intro = tr.gettext("New enrolment. Nothing is saved until you confirm; send /cancel to stop.")
    await _ask(update, context, draft, Step.LABEL, tr, before=intro)


@requires(Role.COORDINATOR)
async def enroll_answer(update: Update, context: BotContext, open_: Open | None = None) -> None:
    """An answer to the enrolment question under way: typed (``bot.dialogues`` routes it
    here with the conversation) or a button of that question."""
    tr = _tr(update, context)
    query = update.callback_query
    if open_ is None:
        open_ = await dialogues.find(update, context, dialogues.ENROL)
    if open_ is None:
        if query is not None:
            await query.answer(tr.gettext("This button is no longer active."))
        return
    step = Step[open_.step]
    if query is not None and not (query.data or "").startswith(f"{ENROL}:{BUTTON_KEYS.get(step)}:"):
        await query.answer(tr.gettext("This button is no longer active."))
        return
    if await _answer(update, context, step, Draft.from_data(open_.data), tr) == ENDED:
        await dialogues.end(update, context, dialogues.ENROL)


SETTERS: Final[dict[Step, Setter]] = {
    Step.LABEL: _set_label,  # well-formed and not in use
    Step.LANGUAGE: _set_language,  # one the bot ships
    Step.TIMEZONE: _set_timezone,  # a button, a city or an IANA id
    Step.SEND_TIME: _set_send_time,  # 07:00 to 21:00
    Step.CBP: _set_cbp,  # whether the patient can become pregnant
    Step.CERVIX: _set_cervix,  # the yearly cervical screening line
    Step.COURSE1_START: _set_course1_start,
    Step.COURSE1_DAYS: _set_course1_days,
    Step.COURSE2_START: _set_course2_start,  # or skip
    Step.EARLY: _set_early,  # confirm a course 2 that starts early, or change its date
    Step.COURSE2_DAYS: _set_course2_days,
    Step.EDIT: _set_edit,  # which answer to give again
}


async def _summary_answer(
    update: Update, context: BotContext, draft: Draft, answer: str, tr: Translator
) -> int:
    """Confirm, edit or cancel the enrolment."""
    match answer:
        case "confirm":
            return await _confirm(update, context, draft, tr)
        case "edit":
            return await _ask(update, context, draft, Step.EDIT, tr)
        case "cancel":
            await _cancelled(update, context, tr)
            return ENDED
    return await _ask(
        update, context, draft, Step.SUMMARY, tr, before=UseTheButtons().render(tr.gettext)
    )


async def _confirm(update: Update, context: BotContext, draft: Draft, tr: Translator) -> int:
    """Store the patient in one transaction, then send the invite link and its QR code."""
    user = update.effective_user
    assert user is not None
    assert draft.label is not None
    assert draft.locale is not None
    assert draft.timezone is not None
    assert draft.send_time is not None
    try:
        profile, _ = build_profile(
            courses=draft.courses(),
            timezone=draft.timezone,
            send_time=draft.send_time.strftime("%H:%M"),
            cbp=draft.cbp,
            allow_early_course=draft.allow_early,
        )
    except ValidationError as error:
        return await _ask(update, context, draft, Step.SUMMARY, tr, before=error.render(tr.gettext))
    enrolment = store.Enrolment(
        draft.label,
        draft.locale,
        profile,
        coordinator_id=user.id,
        cervix=draft.cervix,
        team_id=draft.team_id,
    )
    try:
        async with context.sessions.begin() as session:
            [enrolled] = await store.enroll(
                session,
                enrolments=[enrolment],
                actor=f"user:{user.id}",
                now=context.clock.now(),
                late_window=context.settings.late_window,
            )
    except (store.LabelTaken, IntegrityError):
        # Another coordinator took the label since it was checked.
        draft.label, draft.editing = None, True
        taken = store.LabelTaken(label=enrolment.label).render(tr.gettext)
        return await _ask(update, context, draft, Step.LABEL, tr, before=taken)
    except teams.NoCoordinator as error:
        # The team's last coordinator lost the role meanwhile: nobody would get alerts.
        return await _ask(update, context, draft, Step.SUMMARY, tr, before=error.render(tr.gettext))
    await dialogues.end(update, context, dialogues.ENROL)
    await _send_invite(
        update,
        context,
        tr,
        label=enrolled.label,
        token=enrolled.invite_token,
        expires_at=enrolled.invite_expires_at,
        intro=tr.gettext(
            "%(label)s is enrolled. Nothing is sent to them before they accept the invite."
        )
        % {"label": enrolled.label},
    )
    return ENDED


async def _cancelled(update: Update, context: BotContext, tr: Translator) -> None:
    await reply(update, tr.gettext("Enrolment cancelled. Nothing was saved."))


async def enroll_cancelled(update: Update, context: BotContext, _: Open) -> None:
    """``/cancel`` during an enrolment: every answer is forgotten."""
    await _cancelled(update, context, _tr(update, context))


async def enroll_abandoned(context: BotContext, open_: Open) -> None:
    """The coordinator stopped answering: the enrolment ended and nothing was saved."""
    tr = translator(str(open_.data.get("ui") or context.settings.default_locale))
    minutes = int(ENROL_TIMEOUT.total_seconds() // 60)
    await context.bot.send_message(
        open_.chat_id,
        tr.ngettext(
            "The enrolment was abandoned after %(minutes)d minute without an answer. "
            "Nothing was saved; send /enroll to start again.",
            "The enrolment was abandoned after %(minutes)d minutes without an answer. "
            "Nothing was saved; send /enroll to start again.",
            minutes,
        )
        % {"minutes": minutes},
    )


def conversations() -> dialogues.Conversations:
    """The enrolment takes typed answers, ends on /cancel and says when it was abandoned;
    a /course override and a /forget LABEL confirmation end on /cancel."""
    return dialogues.Conversations(
        answers={dialogues.ENROL: enroll_answer},
        cancels={
            dialogues.ENROL: enroll_cancelled,
            dialogues.COURSE: course_cancelled,
            dialogues.ERASE: erase_cancelled,
        },
        notices={dialogues.ENROL: enroll_abandoned},
    )


# --- /course ---------------------------------------------------------------------------------


def _recorded(number: int, label: str, start: date, days: int, tr: Translator) -> str:
    lines = [
        tr.gettext("Recorded for %(label)s; the reminders are re-planned.") % {"label": label},
        _course_line(number, start, days, tr),
    ]
    if number > EU_MAX_COURSES:
        lines.append(TooManyCourses(number=number, limit=EU_MAX_COURSES).render(tr.gettext))
    return "\n".join(lines)


def _no_patient(tr: Translator) -> str:
    return tr.gettext("No patient with that label.")


@requires(Role.COORDINATOR)
async def course(update: Update, context: BotContext) -> None:
    """``/course LABEL DATE [DAYS]``: record a patient's next course and re-plan."""
    tr = _tr(update, context)
    args = context.args or []
    if len(args) not in (2, 3):
        await reply(
            update,
            tr.gettext("Use /course LABEL DATE [DAYS], for example /course MS-001 2027-01-04 3."),
        )
        return
    label = args[0]
    async with context.sessions() as session:
        patient = await _patient(session, update, label)
    if patient is None:
        await reply(update, _no_patient(tr))
        return
    if patient.status == PatientStatus.WITHDRAWN:
        await reply(update, _withdrawn(patient, tr))
        return
    number = len(patient.courses) + 1
    try:
        start = parse_date(args[1])
        days = parse_course_days(args[2], number=number) if len(args) == 3 else None
        added = await _add_course(context, update, patient.id, start, days, allow_early=False)
    except CourseTooEarly as error:
        prompt = await _send(
            update,
            error.render(tr.gettext),
            _keyboard(
                [
                    (tr.gettext("Confirm early course"), COURSE_CONFIRM),
                    (tr.gettext("Cancel"), COURSE_CANCEL),
                ]
            ),
        )
        if prompt is not None:
            await dialogues.keep(
                update,
                context,
                dialogues.COURSE,
                data={
                    "label": label,
                    "start": start.isoformat(),
                    "days": days,
                    "number": number,
                    "message_id": prompt.message_id,
                },
                patient_id=patient.id,
            )
        return
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    await reply(update, _recorded(added.number, label, added.start, added.days, tr))


async def _add_course(
    context: BotContext,
    update: Update,
    patient_id: int,
    start: date,
    days: int | None,
    *,
    allow_early: bool,
) -> Course:
    user = update.effective_user
    assert user is not None
    async with context.sessions.begin() as session:
        added = await store.add_course(
            session,
            patient_id=patient_id,
            start=start,
            days=days,
            allow_early=allow_early,
            actor=f"user:{user.id}",
            now=context.clock.now(),
            late_window=context.settings.late_window,
        )
    assert added is not None  # patients are never deleted, only forgotten
    return added


@requires(Role.COORDINATOR)
async def course_confirm(update: Update, context: BotContext) -> None:
    """The early-course override: only for the course this coordinator was just asked about."""
    query = update.callback_query
    if query is None:
        return
    tr = _tr(update, context)
    pending = await dialogues.find(update, context, dialogues.COURSE)
    if (
        pending is None
        or not isinstance(query.message, Message)
        or query.message.message_id != pending.data["message_id"]
        or not await dialogues.end(update, context, dialogues.COURSE)
    ):
        await query.answer(tr.gettext("Nothing to confirm."))
        return
    await query.answer()
    await _drop_keyboard(query)
    if query.data != COURSE_CONFIRM:
        await reply(update, tr.gettext("Nothing was recorded."))
        return
    label, number = str(pending.data["label"]), int(pending.data["number"])
    start, days = date.fromisoformat(pending.data["start"]), pending.data["days"]
    async with context.sessions() as session:
        patient = await _patient(session, update, label)
    if (
        patient is None
        or patient.id != pending.patient_id
        or len(patient.courses) + 1 != number
        or patient.status == PatientStatus.WITHDRAWN
    ):
        await reply(
            update,
            tr.gettext(
                "The patient's record changed meanwhile; nothing was recorded. Send /course again."
            ),
        )
        return
    try:
        added = await _add_course(context, update, patient.id, start, days, allow_early=True)
    except ValidationError as error:
        await reply(update, error.render(tr.gettext))
        return
    await reply(update, _recorded(added.number, label, added.start, added.days, tr))


async def course_cancelled(update: Update, context: BotContext, _: Open) -> None:
    """``/cancel`` while an early course waits for its override."""
    await reply(update, _tr(update, context).gettext("Nothing was recorded."))


# --- /patients, /patient -----------------------------------------------------------------------


async def _patients_page(
    context: BotContext, update: Update, tr: Translator, page: int
) -> tuple[str, InlineKeyboardMarkup | None] | None:
    """Page ``page`` (from 1) of the list of the user's teams' patients, or None if there
    is no such page."""
    async with context.sessions() as session:
        scope = await _scope(session, update)
        total = await coordination.count_patients(session, scope=scope)
        pages = max(1, math.ceil(total / PAGE_SIZE))
        if not 1 <= page <= pages:
            return None
        summaries = await store.list_patients(
            session, scope=scope, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE
        )
        adherence = await coordination.adherence(
            session, patient_ids=[summary.id for summary in summaries]
        )
    if not summaries:
        return tr.gettext("No patients yet. Send /enroll to enrol one."), None
    first = (page - 1) * PAGE_SIZE + 1
    lines = [
        tr.gettext("Patients %(first)d–%(last)d of %(total)d:")
        % {"first": first, "last": first + len(summaries) - 1, "total": total}
    ]
    for summary in summaries:
        lines.append(
            "• "
            # TRANSLATORS: one line of the patient list.
            + tr.gettext("%(label)s: %(status)s; next reminder %(next)s; adherence %(adherence)s")
            % {
                "label": summary.label,
                "status": _status(summary.status, tr),
                "next": when(summary.next_due, summary.timezone, tr)
                if summary.next_due
                # TRANSLATORS: no reminder is planned for this patient.
                else tr.gettext("none"),
                "adherence": _adherence(adherence[summary.id], tr),
            }
        )
    arrows = []
    if page > 1:
        arrows.append((PREVIOUS, f"{PATIENTS_PAGE}{page - 1}"))
    if page < pages:
        arrows.append((NEXT, f"{PATIENTS_PAGE}{page + 1}"))
    return "\n".join(lines), _keyboard(arrows) if arrows else None


@requires(Role.COORDINATOR)
async def patients(update: Update, context: BotContext) -> None:
    """``/patients``: every patient with status, next reminder and adherence, page by page."""
    tr = _tr(update, context)
    page = await _patients_page(context, update, tr, 1)
    assert page is not None  # page 1 always exists
    await _send(update, *page)


@requires(Role.COORDINATOR)
async def patients_page(update: Update, context: BotContext) -> None:
    """◀ ▶ under the patient list: show another page in the same message."""
    query = update.callback_query
    if query is None:
        return
    tr = _tr(update, context)
    number = (query.data or "").removeprefix(PATIENTS_PAGE)
    page = (
        await _patients_page(context, update, tr, int(number))
        if number.isascii() and number.isdigit() and len(number) <= 6
        else None
    )
    if page is None:
        await query.answer(tr.gettext("There is no such page."))
        return
    text, markup = page
    # Telegram refuses an edit that changes nothing.
    if not isinstance(query.message, Message) or query.message.text != text:
        await query.edit_message_text(text, reply_markup=markup)
    await query.answer()


def _action(action: str, tr: Translator) -> str:
    try:
        return tr.gettext(ACTION_NAMES[Action(action)])
    except ValueError:
        return action


@requires(Role.COORDINATOR)
async def patient(update: Update, context: BotContext) -> None:
    """``/patient LABEL``: one patient's settings, courses, adherence and next reminders."""
    tr = _tr(update, context)
    label = _label_argument(context)
    if label is None:
        await reply(update, tr.gettext("Use /patient LABEL, for example /patient MS-001."))
        return
    async with context.sessions() as session:
        detail = await coordination.patient_detail(
            session, label=label, upcoming=UPCOMING, scope=await _scope(session, update)
        )
    if detail is None:
        await reply(update, _no_patient(tr))
        return
    found = detail.patient
    lines = [
        tr.gettext("Patient %(label)s") % {"label": found.label},
        tr.gettext("Status: %(status)s") % {"status": _status(found.status, tr)},
        tr.gettext("Language: %(language)s")
        % {"language": f"{_language_name(found.locale)} ({found.locale})"},
        tr.gettext("Time zone: %(timezone)s") % {"timezone": found.timezone},
        tr.gettext("Send time: %(time)s") % {"time": tr.time(found.send_time)},
        tr.gettext("Can become pregnant: %(answer)s") % {"answer": _yes_no(found.cbp, tr)},
        tr.gettext("Has a cervix: %(answer)s") % {"answer": _yes_no(found.cervix, tr)},
    ]
    lines += [_course_line(c.number, c.start, c.days, tr) for c in found.courses]
    adherence = detail.adherence
    lines.append(
        tr.gettext("Adherence: %(adherence)s (%(done)d of %(sent)d tests confirmed)")
        % {"adherence": _adherence(adherence, tr), "done": adherence.done, "sent": adherence.sent}
        if adherence.sent
        else tr.gettext("Adherence: %(adherence)s") % {"adherence": _adherence(adherence, tr)}
    )
    last = detail.last_acknowledgement
    if last is None:
        lines.append(tr.gettext("Last acknowledgement: none"))
    else:
        lines.append(
            # TRANSLATORS: e.g. "Last acknowledgement: February 6, 2026, 10:00 AM, Done
            # (Monthly blood and urine tests)".
            tr.gettext("Last acknowledgement: %(when)s, %(action)s (%(reminder)s)")
            % {
                "when": when(last.at, found.timezone, tr),
                "action": _action(last.action, tr),
                "reminder": _kind_title(last.kind, tr),
            }
        )
    if detail.upcoming:
        lines += [tr.gettext("Next reminders:"), agenda(detail.upcoming, found, tr)]
    else:
        lines.append(tr.gettext("No reminders planned."))
    await reply(update, "\n".join(lines))


def _kind_title(kind: str, tr: Translator) -> str:
    try:
        return tr.gettext(KIND_TITLES[Kind(kind)])
    except ValueError:
        return kind


# --- /pause, /resume, /invite --------------------------------------------------------------


def _withdrawn(found: Patient, tr: Translator) -> str:
    return tr.gettext("%(label)s withdrew consent; nothing was changed.") % {"label": found.label}


def _why_not_pause(found: Patient, tr: Translator) -> str:
    label = {"label": found.label}
    match found.status:
        case PatientStatus.INVITED:
            return tr.gettext("%(label)s has not accepted the invite yet: nothing is sent.") % label
        case PatientStatus.PAUSED:
            return tr.gettext("%(label)s is already paused.") % label
        case PatientStatus.UNREACHABLE:
            return (
                tr.gettext("%(label)s is unreachable (the bot is blocked): nothing is sent.")
                % label
            )
    return _withdrawn(found, tr)


def _why_not_resume(found: Patient, tr: Translator) -> str:
    label = {"label": found.label}
    match found.status:
        case PatientStatus.INVITED:
            return (
                tr.gettext("%(label)s has not accepted the invite yet: there is nothing to resume.")
                % label
            )
        case PatientStatus.ACTIVE:
            return tr.gettext("%(label)s is active: the reminders are running.") % label
    return _withdrawn(found, tr)


async def _change_status(
    update: Update,
    context: BotContext,
    *,
    allowed: set[PatientStatus],
    change: Callable[..., Awaitable[Patient | None]],
    why_not: Callable[[Patient, Translator], str],
    done: str,
    usage: str,
) -> None:
    tr = _tr(update, context)
    user = update.effective_user
    label = _label_argument(context)
    if label is None or user is None:
        await reply(update, tr.gettext(usage))
        return
    async with context.sessions.begin() as session:
        found = await _patient(session, update, label)
        if found is not None and found.status in allowed:
            await change(
                session, patient_id=found.id, actor=f"user:{user.id}", now=context.clock.now()
            )
            text = tr.gettext(done) % {"label": label}
        else:
            text = why_not(found, tr) if found is not None else _no_patient(tr)
    await reply(update, text)


@requires(Role.COORDINATOR)
async def pause(update: Update, context: BotContext) -> None:
    """``/pause LABEL``: stop sending to an active patient until resumed."""
    await _change_status(
        update,
        context,
        allowed={PatientStatus.ACTIVE},
        change=store.pause,
        why_not=_why_not_pause,
        done=N_("%(label)s is paused: no reminders are sent until /resume."),
        usage=N_("Use /pause LABEL, for example /pause MS-001."),
    )


@requires(Role.COORDINATOR)
async def resume(update: Update, context: BotContext) -> None:
    """``/resume LABEL``: send again; what was missed goes out if still inside the late window."""
    await _change_status(
        update,
        context,
        allowed={PatientStatus.PAUSED, PatientStatus.UNREACHABLE},
        change=store.resume,
        why_not=_why_not_resume,
        done=N_("%(label)s is active again; reminders missed while paused are sent if recent."),
        usage=N_("Use /resume LABEL, for example /resume MS-001."),
    )


@requires(Role.COORDINATOR)
async def invite(update: Update, context: BotContext) -> None:
    """``/invite LABEL``: a new invite link and QR code; the previous link stops working."""
    tr = _tr(update, context)
    user = update.effective_user
    label = _label_argument(context)
    if label is None or user is None:
        await reply(update, tr.gettext("Use /invite LABEL, for example /invite MS-001."))
        return
    now = context.clock.now()
    async with context.sessions.begin() as session:
        found = await _patient(session, update, label)
        token = None
        if found is not None and found.status == PatientStatus.INVITED:
            token = await store.issue_invite(
                session, patient_id=found.id, actor=f"user:{user.id}", now=now
            )
    if found is None:
        await reply(update, _no_patient(tr))
        return
    if token is None:
        await reply(
            update,
            _withdrawn(found, tr)
            if found.status == PatientStatus.WITHDRAWN
            else tr.gettext("%(label)s has already accepted an invite; a new one is not needed.")
            % {"label": label},
        )
        return
    await _send_invite(
        update,
        context,
        tr,
        label=label,
        token=token,
        expires_at=now + store.INVITE_TTL,
        intro=tr.gettext("New invite for %(label)s; the previous link no longer works.")
        % {"label": label},
    )


@requires(Role.COORDINATOR)
async def cervix(update: Update, context: BotContext) -> None:
    """``/cervix LABEL yes|no``: whether the yearly reminder asks for cervical screening."""
    tr = _tr(update, context)
    user = update.effective_user
    usage = tr.gettext("Use /cervix LABEL yes or /cervix LABEL no, for example /cervix MS-001 yes.")
    if user is None or not context.args or len(context.args) != 2:
        await reply(update, usage)
        return
    label, answer = context.args
    try:
        value = _yes_or_no(answer, tr)
    except AnswerYesOrNo:
        await reply(update, usage)
        return
    async with context.sessions.begin() as session:
        found = await _patient(session, update, label)
        if found is not None:
            await store.set_cervix(
                session,
                patient_id=found.id,
                cervix=value,
                actor=f"user:{user.id}",
                now=context.clock.now(),
            )
    if found is None:
        await reply(update, _no_patient(tr))
        return
    await reply(
        update,
        # TRANSLATORS: the answer to /cervix; %(answer)s is "yes" or "no".
        tr.gettext("%(label)s: cervical screening in the yearly reminder: %(answer)s.")
        % {"label": label, "answer": _yes_no(value, tr)},
    )


@requires(Role.COORDINATOR)
async def forget(update: Update, context: BotContext) -> None:
    """``/forget LABEL``: ask, then erase a patient of the coordinator's teams."""
    tr = _tr(update, context)
    label = _label_argument(context)
    if label is None:
        await reply(update, tr.gettext("Use /forget LABEL, for example /forget MS-001."))
        return
    async with context.sessions() as session:
        found = await _patient(session, update, label)
    if found is None:
        await reply(update, _no_patient(tr))
        return
    await dialogues.keep(update, context, dialogues.ERASE, patient_id=found.id)
    await _send(
        update,
        tr.gettext(
            "Erase everything stored about %(label)s? Their reminders stop at once, their "
            "label, chat, course dates and reminder history are deleted and this cannot be "
            "undone. Only anonymous counts of their reminders remain."
        )
        % {"label": label},
        _keyboard(
            [
                # TRANSLATORS: button: confirm erasing a patient's data.
                (tr.gettext("Erase %(label)s") % {"label": label}, f"{ERASE}{found.id}"),
                (tr.gettext("Cancel"), ERASE_CANCEL),
            ]
        ),
    )


@requires(Role.COORDINATOR)
async def forget_confirm(update: Update, context: BotContext) -> None:
    """The button under ``/forget LABEL``: the patient is looked up again in the presser's
    teams (callback data is never trusted), then erased."""
    query = update.callback_query
    user = update.effective_user
    if query is None or user is None:
        return
    tr = _tr(update, context)
    data = query.data or ""
    asked = await dialogues.take(update, context, dialogues.ERASE)
    if asked is None or (data != ERASE_CANCEL and data != f"{ERASE}{asked.patient_id}"):
        await query.answer(tr.gettext("This button is no longer active."))
        await _drop_keyboard(query)
        return
    await query.answer()
    await _drop_keyboard(query)
    if data == ERASE_CANCEL or asked.patient_id is None:
        await reply(update, tr.gettext("Nothing was erased."))
        return
    async with context.sessions.begin() as session:
        found = await store.patient_by_id(
            session, patient_id=asked.patient_id, scope=await _scope(session, update)
        )
        erased = (
            await patient_data.erase(
                session, patient_id=found.id, actor=f"user:{user.id}", now=context.clock.now()
            )
            if found is not None
            else None
        )
    if erased is None:
        await reply(update, _no_patient(tr))
        return
    await reply(
        update,
        tr.gettext(
            "%(label)s is erased: nothing about them is stored any more and no reminder "
            "will be sent."
        )
        % {"label": erased.label},
    )


async def erase_cancelled(update: Update, context: BotContext, _: Open) -> None:
    """``/cancel`` while a /forget LABEL waits for its confirmation."""
    await reply(update, _tr(update, context).gettext("Nothing was erased."))


def handlers() -> Handlers:
    """The coordinator commands and buttons."""
    return [
        CommandHandler("forget", forget, filters=PRIVATE & WITH_ARGUMENT),
        CallbackQueryHandler(forget_confirm, pattern=f"^({ERASE}\\d+|{ERASE_CANCEL})$"),
        CommandHandler("enroll", enroll, filters=PRIVATE),
        CallbackQueryHandler(enroll_answer, pattern=f"^{ENROL}:"),
        CommandHandler("course", course, filters=PRIVATE),
        CallbackQueryHandler(course_confirm, pattern=f"^({COURSE_CONFIRM}|{COURSE_CANCEL})$"),
        CommandHandler("patients", patients, filters=PRIVATE),
        CallbackQueryHandler(patients_page, pattern=f"^{PATIENTS_PAGE}"),
        CommandHandler("patient", patient, filters=PRIVATE),
        CommandHandler("pause", pause, filters=PRIVATE),
        CommandHandler("resume", resume, filters=PRIVATE),
        CommandHandler("invite", invite, filters=PRIVATE),
        CommandHandler("cervix", cervix, filters=PRIVATE),
    ]

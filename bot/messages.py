"""What a patient reads: reminders, follow-ups, button labels and the consent text.

The English here is the source of the Babel catalogs and is clinical content: each
reminder carries what PROTOCOL.md ("What each message carries") lists for its kind, no
more and no less, and no text ever tells a patient what dose of a medicine to take or
when; "as prescribed by your MS team" is as far as any goes.

Texts are Telegram plain text (no parse mode): line breaks and "• " bullets only, so a
translation cannot break markup and right-to-left scripts read as written. Every line is
its own catalog entry and the bullets are added here, so translators never handle layout.

A message stays readable on a phone: at most ``MESSAGE_LIMIT`` characters. A bundle that
would be longer (the monthly tests, the thyroid test, the yearly screening and the evening
warning on one day) goes out as consecutive messages, each with the footer
(``bot.sender.TelegramSender.pages``).
"""

from __future__ import annotations

import html
from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Final

from bot.i18n import Translator
from bot.texts import KIND_TITLES
from scheduler.errors import N_
from scheduler.protocol import TEST_KINDS, Kind

# 2: Telegram, who sees what, alerts, erasure at any time, retention and contact.
CONSENT_VERSION: Final = 2
MESSAGE_LIMIT: Final = 1500

# Kinds whose message names a date (the planner's ``PlanItem.about``).
DATED_KINDS: Final = frozenset(
    {
        Kind.COURSE_UPCOMING,
        Kind.ANTIVIRAL_PROPHYLAXIS,
        Kind.CONTRACEPTION,
        Kind.CONTRACEPTION_END,
        Kind.COURSE_DUE,
        Kind.MONITORING_END,
    }
)

# TRANSLATORS: the last line of every reminder. Keep "emergency number" general: the
# patient may be in any country.
FOOTER: Final = N_(
    "This is an automated reminder. In an emergency, call your local emergency number."
)

# TRANSLATORS: button under a test reminder: the patient has had the tests. Keep it short.
DONE: Final = N_("Done")
# TRANSLATORS: button under a test reminder: send this reminder again in 24 hours.
SNOOZE: Final = N_("Remind me tomorrow")
# TRANSLATORS: button: the patient reports symptoms; the care team is alerted at once.
SYMPTOMS: Final = N_("I have symptoms")
# TRANSLATORS: button under the evening warning after an infusion: no warning signs.
IM_OK: Final = N_("I'm OK")
# TRANSLATORS: button under the consent text: the patient agrees to get reminders.
ACCEPT: Final = N_("I agree")
# TRANSLATORS: button under the consent text: the patient does not agree; nothing is sent.
DECLINE: Final = N_("I do not agree")


def _bullets(*items: str) -> str:
    return "\n".join(f"• {item}" for item in items)


# One function per kind: the lines under the title. ``when`` is the long date the
# message names ("" for kinds that name none).
_Body = Callable[[Translator, str, bool], list[str]]  # (tr, when, cervix)


def _course_upcoming(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: sent 7 days and 1 day before a treatment course; %(date)s is the
        # course's first infusion day as a long date ("January 4, 2027").
        tr.gettext("Your treatment course starts on %(date)s.") % {"date": when},
        _bullets(
            # TRANSLATORS: list item of the course reminder. Steroid premedication: a
            # steroid medicine given before the infusion. Never add a dose or a number of
            # days; the sources disagree, so the team decides.
            tr.gettext(
                "On the first infusion days you will get a steroid medicine before the "
                "infusion, as prescribed by your MS team."
            ),
            # TRANSLATORS: list item of the course reminder. Medicine that prevents herpes
            # infections (an antiviral); never add a name or a dose.
            tr.gettext(
                "You take anti-herpes medicine from day 1 of the course, as prescribed by "
                "your MS team."
            ),
            # TRANSLATORS: list item of the course reminder.
            tr.gettext(
                "Each infusion takes about 4 hours. Afterwards you stay at least 2 hours so "
                "the team can check on you."
            ),
            # TRANSLATORS: list item of the course reminder. Antihistamine: against
            # allergic reactions; fever-reducing medicine: an antipyretic.
            tr.gettext(
                "Your MS team may give you an antihistamine and a fever-reducing medicine "
                "before the infusion."
            ),
            # TRANSLATORS: list item of the course reminder. The patient alert card is the
            # card from the treatment's educational materials.
            tr.gettext("Bring your patient alert card."),
            # TRANSLATORS: list item of the course reminder. A live vaccine contains a
            # weakened germ (measles, yellow fever, …); do not name vaccines.
            tr.gettext(
                "Before the course your MS team checks for infections and your vaccinations. "
                "Do not have a live vaccine shortly before or after a course without asking them."
            ),
            # TRANSLATORS: list item of the course reminder. Listeria: bacteria in some foods.
            tr.gettext(
                "For about a month after each course, avoid foods that can carry listeria, "
                "such as unpasteurised milk and cheese, undercooked meat and smoked fish."
            ),
        ),
    ]


def _post_infusion_warning(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: sent every evening during a course and for 3 days after it. Must
        # read as an urgent instruction: call the emergency number now, not later.
        tr.gettext("Call your local emergency number at once if you get any of these:"),
        _bullets(
            # TRANSLATORS: list item: emergency warning sign after an infusion.
            tr.gettext("a sudden, severe headache"),
            # TRANSLATORS: list item: emergency warning sign after an infusion.
            tr.gettext("neck pain"),
            # TRANSLATORS: list item: emergency warning sign (stroke).
            tr.gettext("a drooping face"),
            # TRANSLATORS: list item: emergency warning sign (stroke).
            tr.gettext("weakness on one side of your body"),
            # TRANSLATORS: list item: emergency warning sign (stroke).
            tr.gettext("difficulty speaking"),
            # TRANSLATORS: list item: emergency warning sign (heart).
            tr.gettext("chest pain"),
            # TRANSLATORS: list item: emergency warning sign (heart, lungs).
            tr.gettext("shortness of breath"),
        ),
        # TRANSLATORS: after the list of emergency warning signs. A tear in an artery is
        # an arterial dissection.
        tr.gettext(
            "These can be signs of a stroke, a tear in an artery or a heart problem. "
            "Most happen within 1 to 3 days of an infusion."
        ),
        # TRANSLATORS: the observation time is the time the patient stays at the clinic
        # after each infusion.
        tr.gettext(
            "Reactions to the infusion, such as rash, fever, itching or dizziness, can also "
            "start after the observation time. Tell your MS team about them."
        ),
    ]


def _antiviral_prophylaxis(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: sent weekly from the first infusion day; %(date)s is a long date, the
        # earliest day the anti-herpes medicine may end: a minimum, never a day to stop on
        # (the team may prescribe it for longer). Never add a name or a dose.
        tr.gettext(
            "Keep taking your anti-herpes medicine as prescribed until at least %(date)s, "
            "or for longer if your MS team tells you to."
        )
        % {"date": when},
    ]


def _labs_monthly(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: the monthly test reminder; a list of three tests follows.
        tr.gettext("It is time for your monthly blood and urine tests:"),
        _bullets(
            # TRANSLATORS: list item: a laboratory test; use the usual medical term.
            tr.gettext("full blood count with differential"),
            # TRANSLATORS: list item: a laboratory test; use the usual medical term.
            tr.gettext("serum creatinine"),
            # TRANSLATORS: list item: a laboratory test; use the usual medical term.
            tr.gettext("urine test (urinalysis) with urine cell counts"),
        ),
        # TRANSLATORS: after the list of monthly tests. ALT, AST: liver enzymes; keep the
        # abbreviations.
        tr.gettext("Your MS team may also check your liver (ALT, AST and bilirubin)."),
        # TRANSLATORS: after the list of monthly tests.
        tr.gettext("Please have these tests even if you feel well."),
        # TRANSLATORS: a list of warning signs follows.
        tr.gettext("Tell your MS team promptly if you notice:"),
        _bullets(
            # TRANSLATORS: list item: signs of a low platelet count.
            tr.gettext(
                "easy bruising, small red or purple spots on the skin, bleeding gums or "
                "nose, heavy or unusual periods, or cuts that are slow to stop bleeding"
            ),
            # TRANSLATORS: list item: signs of acquired haemophilia A, a bleeding disorder.
            tr.gettext("large bruises, or bleeding into joints or muscles"),
            # TRANSLATORS: list item: signs of a kidney problem. Tea-coloured: brown.
            tr.gettext(
                "blood in your urine, red or tea-coloured urine, swelling of your legs or "
                "feet, or coughing up blood"
            ),
            # TRANSLATORS: list item: signs of a liver problem.
            tr.gettext("yellow skin or eyes, or dark urine"),
            # TRANSLATORS: list item.
            tr.gettext("fever or other signs of infection"),
            # TRANSLATORS: list item: signs of haemophagocytic lymphohistiocytosis (HLH), an
            # over-reaction of the immune system.
            tr.gettext("fever with a rash or swollen glands"),
            # TRANSLATORS: list item: signs of autoimmune encephalitis (inflammation of the
            # brain).
            tr.gettext("new confusion, memory problems or seizures"),
        ),
    ]


def _thyroid_quarterly(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: the reminder every 3 months. TSH: thyroid-stimulating hormone.
        tr.gettext("It is time for your thyroid blood test (TSH)."),
        # TRANSLATORS: a list of thyroid symptoms follows.
        tr.gettext("Tell your MS team if you notice:"),
        _bullets(
            # TRANSLATORS: list item: a thyroid symptom.
            tr.gettext("sweating more than usual"),
            # TRANSLATORS: list item: a thyroid symptom.
            tr.gettext("weight loss or gain you cannot explain"),
            # TRANSLATORS: list item: a thyroid symptom (palpitations).
            tr.gettext("a pounding or racing heart"),
            # TRANSLATORS: list item: a thyroid symptom.
            tr.gettext("swelling around your eyes"),
            # TRANSLATORS: list item: a thyroid symptom.
            tr.gettext("feeling unusually cold or tired"),
        ),
        # TRANSLATORS: last line of the thyroid reminder.
        tr.gettext(
            "Thyroid problems matter in pregnancy, so tell your MS team if you are planning one."
        ),
    ]


def _contraception(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: monthly, only to patients who can become pregnant; %(date)s is
        # the day 4 months after the last infusion of the current course, as a long date.
        tr.gettext(
            "Please use effective contraception during your treatment and for 4 months "
            "after each course. After this course, that means until %(date)s."
        )
        % {"date": when},
        # TRANSLATORS: second line of the contraception reminder.
        tr.gettext("If you have questions about breastfeeding, ask your MS team."),
    ]


def _contraception_end(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: only to patients who can become pregnant; %(date)s is the day the
        # 4-month period after a course ends, as a long date.
        tr.gettext("The 4-month contraception period after your course ends on %(date)s.")
        % {"date": when},
        # TRANSLATORS: second line of the end-of-contraception reminder.
        tr.gettext("Please talk to your MS team before planning a pregnancy."),
    ]


def _course_due(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: sent about a month before the next course; %(date)s is the day 12
        # months after the first course began, as a long date. "Around": not fixed yet.
        tr.gettext("Your next treatment course is due around %(date)s.") % {"date": when},
        # TRANSLATORS: second line of the next-course reminder.
        tr.gettext("Your MS team will contact you."),
    ]


def _annual_screening(tr: Translator, when: str, cervix: bool) -> list[str]:
    lines = [
        # TRANSLATORS: the yearly reminder; melanoma is a skin cancer.
        tr.gettext("It is time for your yearly skin check for melanoma (a type of skin cancer)."),
    ]
    if cervix:
        lines.append(
            # TRANSLATORS: added to the yearly reminder for patients with a cervix. HPV:
            # human papillomavirus.
            tr.gettext("It is also time for your yearly cervical screening (HPV test).")
        )
    return lines


def _monitoring_end(tr: Translator, when: str, cervix: bool) -> list[str]:
    return [
        # TRANSLATORS: %(date)s is the end of the monitoring period (48 months after the
        # last infusion) as a long date.
        tr.gettext("Your 48-month monitoring period ends on %(date)s.") % {"date": when},
        # TRANSLATORS: last line of the end-of-monitoring message. Autoimmune conditions:
        # illnesses in which the immune system attacks the body.
        tr.gettext(
            "Autoimmune conditions can still appear later, so keep telling your MS team "
            "about any symptoms."
        ),
    ]


_BODIES: Final[dict[Kind, _Body]] = {
    Kind.COURSE_UPCOMING: _course_upcoming,
    Kind.POST_INFUSION_WARNING: _post_infusion_warning,
    Kind.ANTIVIRAL_PROPHYLAXIS: _antiviral_prophylaxis,
    Kind.LABS_MONTHLY: _labs_monthly,
    Kind.THYROID_QUARTERLY: _thyroid_quarterly,
    Kind.CONTRACEPTION: _contraception,
    Kind.CONTRACEPTION_END: _contraception_end,
    Kind.COURSE_DUE: _course_due,
    Kind.ANNUAL_SCREENING: _annual_screening,
    Kind.MONITORING_END: _monitoring_end,
}


def part_text(kind: Kind, about: date | None, *, cervix: bool, tr: Translator) -> str:
    """One reminder of a message: its title and its lines, without the footer."""
    if about is None and kind in DATED_KINDS:
        raise ValueError(f"a {kind} reminder names a date: pass about=")
    when = tr.date(about) if about is not None else ""
    return "\n".join([tr.gettext(KIND_TITLES[kind]), *_BODIES[kind](tr, when, cervix)])


def bundle_text(parts: Sequence[tuple[Kind, date | None]], *, cervix: bool, tr: Translator) -> str:
    """Reminders due at the same instant as one message, with the footer once at the end.

    ``parts`` are (kind, about) pairs in the order they are shown; ``cervix`` (the patient
    has a cervix) adds the cervical screening line to the yearly reminder.
    """
    if not parts:
        raise ValueError("a message needs at least one reminder")
    texts = [part_text(kind, about, cervix=cervix, tr=tr) for kind, about in parts]
    return "\n\n".join([*texts, tr.gettext(FOOTER)])


def bundle_html(parts: Sequence[tuple[Kind, date | None]], *, cervix: bool, tr: Translator) -> str:
    """``bundle_text`` for Telegram's HTML parse mode: each title in bold, and every text
    (the catalogs', the dates) escaped, so that no character of a translation can break the
    markup and keep a reminder from being sent. Telegram shows exactly ``bundle_text``."""
    if not parts:
        raise ValueError("a message needs at least one reminder")
    texts = []
    for kind, about in parts:
        title, *lines = part_text(kind, about, cervix=cervix, tr=tr).split("\n")
        texts.append("\n".join([f"<b>{html.escape(title, quote=False)}</b>", *lines_html(lines)]))
    return "\n\n".join([*texts, html.escape(tr.gettext(FOOTER), quote=False)])


def lines_html(lines: Sequence[str]) -> list[str]:
    """Plain lines as HTML text (``<``, ``>`` and ``&`` escaped)."""
    return [html.escape(line, quote=False) for line in lines]


def pages(
    parts: Sequence[tuple[Kind, date | None]], *, cervix: bool, tr: Translator
) -> list[list[int]]:
    """How a bundle is sent: the indices of ``parts`` in each message, parts kept whole and
    in order, each message with its footer and at most ``MESSAGE_LIMIT`` characters (a part
    longer than that alone goes alone)."""
    footer = len(tr.gettext(FOOTER))
    result: list[list[int]] = [[]]
    size = footer
    for index, (kind, about) in enumerate(parts):
        length = len(part_text(kind, about, cervix=cervix, tr=tr)) + 2  # and its blank line
        if result[-1] and size + length > MESSAGE_LIMIT:
            result.append([])
            size = footer
        result[-1].append(index)
        size += length
    return result


def reminder_text(kind: Kind, *, about: date | None, cervix: bool, tr: Translator) -> str:
    """One reminder with its footer; ``about`` is required for ``DATED_KINDS``."""
    return bundle_text([(kind, about)], cervix=cervix, tr=tr)


def nudge_text(kinds: Collection[Kind], due_day: date, days_overdue: int, tr: Translator) -> str:
    """The follow-up for the test reminders of one message that are not marked done: it
    names every one of them (PROTOCOL.md "Buttons on bundled messages")."""
    if not kinds or set(kinds) - TEST_KINDS:
        raise ValueError(f"only test reminders are followed up, not {sorted(kinds)}")
    params = {"count": days_overdue, "date": tr.date(due_day)}
    done = {"done": tr.gettext(DONE)}
    if set(kinds) == TEST_KINDS:
        # TRANSLATORS: follow-up when neither the monthly tests nor the thyroid test are
        # confirmed; %(count)d is the number of days since %(date)s, the long date they
        # were due.
        due = tr.ngettext(
            "Your monthly blood and urine tests and your thyroid blood test were due "
            "%(count)d day ago, on %(date)s.",
            "Your monthly blood and urine tests and your thyroid blood test were due "
            "%(count)d days ago, on %(date)s.",
            days_overdue,
        )
    elif Kind.LABS_MONTHLY in kinds:
        # TRANSLATORS: follow-up when the monthly tests are not confirmed; %(count)d
        # is the number of days since %(date)s, the long date they were due.
        due = tr.ngettext(
            "Your monthly blood and urine tests were due %(count)d day ago, on %(date)s.",
            "Your monthly blood and urine tests were due %(count)d days ago, on %(date)s.",
            days_overdue,
        )
    else:
        # TRANSLATORS: follow-up when the thyroid test is not confirmed; %(count)d is
        # the number of days since %(date)s, the long date it was due.
        due = tr.ngettext(
            "Your thyroid blood test was due %(count)d day ago, on %(date)s.",
            "Your thyroid blood test was due %(count)d days ago, on %(date)s.",
            days_overdue,
        )
    if set(kinds) == {Kind.THYROID_QUARTERLY}:
        # TRANSLATORS: %(done)s is the label of the "Done" button, as translated there.
        then = tr.gettext(
            "If you have had it, tap “%(done)s”. If not, please have it as soon as you can."
        )
    else:
        # TRANSLATORS: %(done)s is the label of the "Done" button, as translated there.
        then = tr.gettext(
            "If you have had them, tap “%(done)s”. If not, please have them as soon as you can."
        )
    return "\n".join([due % params, then % done]) + "\n\n" + tr.gettext(FOOTER)


def symptoms_text(tr: Translator) -> str:
    """The urgent-help text shown at once when the patient taps "I have symptoms"."""
    return "\n".join(
        [
            # TRANSLATORS: shown at once when the patient taps "I have symptoms". Must be
            # urgent and unambiguous.
            tr.gettext("If this is an emergency, call your local emergency number now."),
            # TRANSLATORS: second line of the urgent-help text.
            tr.gettext("If it is not an emergency, contact your MS team today."),
        ]
    )


def symptoms_reported_text(tr: Translator, *, told: bool) -> str:
    """After the urgent-help text: whether the care team has been told (``told``); the
    patient must not believe they were when nobody could be reached."""
    if told:
        # TRANSLATORS: after the urgent-help text; the care coordinator has been alerted
        # automatically.
        return tr.gettext("We have told your MS team that you reported symptoms.")
    # TRANSLATORS: after the urgent-help text, when the alert to the care team could not
    # be delivered yet.
    return tr.gettext("Your MS team has not been told yet. Please call them yourself today.")


def snoozed_text(tr: Translator) -> str:
    """The reply to "Remind me tomorrow"."""
    # TRANSLATORS: reply to the "Remind me tomorrow" button.
    return tr.gettext("OK, we will remind you again tomorrow.")


def acknowledged_text(tr: Translator) -> str:
    """The reply to "Done" and "I'm OK"."""
    # TRANSLATORS: reply to the "Done" and "I'm OK" buttons.
    return tr.gettext("Thank you, your answer is recorded.")


def already_recorded_text(tr: Translator) -> str:
    """The reply to a button of a reminder that was already answered."""
    # TRANSLATORS: reply when the patient taps a button of a reminder answered before.
    return tr.gettext("You have already answered this reminder. Thank you.")


def consent_text(
    tr: Translator, *, contact: str | None = None, retention: str | None = None
) -> str:
    """What the patient agrees to, shown before anything is sent (``CONSENT_VERSION``).

    ``contact`` (whom to ask: a phone line, an address) and ``retention`` (how long the
    clinic keeps the data) are the clinic's own words from the settings, shown as written;
    without them the text says "your MS team" and "until you ask for erasure".
    """
    if contact:
        # TRANSLATORS: consent text; %(contact)s is the clinic's contact as the clinic
        # wrote it (a phone number, an address), in any language.
        reach = tr.gettext("For questions, contact your care team: %(contact)s") % {
            "contact": contact
        }
    else:
        # TRANSLATORS: consent text, when the clinic set no contact line.
        reach = tr.gettext("For questions, contact your MS team at your clinic.")
    if retention:
        # TRANSLATORS: consent text; %(retention)s is the clinic's own sentence on how long
        # it keeps the data, as the clinic wrote it.
        kept = tr.gettext("How long your data is kept: %(retention)s") % {"retention": retention}
    else:
        # TRANSLATORS: consent text, when the clinic set no retention sentence.
        kept = tr.gettext("Your data is kept until you ask for it to be erased.")
    return "\n\n".join(
        [
            # TRANSLATORS: first paragraph of the consent text. Alemtuzumab is the drug;
            # Lemtrada is its brand name. Keep the whole consent text short: it is read on
            # a phone (under 1,500 characters in all).
            tr.gettext(
                "This bot sends you the reminders of the monitoring programme for your "
                "alemtuzumab (Lemtrada) treatment, at your local time and in your language."
            ),
            "\n".join(
                [
                    # TRANSLATORS: consent text; a list of stored data follows.
                    tr.gettext("What is stored:"),
                    _bullets(
                        # TRANSLATORS: consent list item: the clinic's code for the patient.
                        tr.gettext("a pseudonymous label from your clinic (not your name)"),
                        # TRANSLATORS: consent list item.
                        tr.gettext("your language, time zone and reminder time"),
                        # TRANSLATORS: consent list item; contraception reminders go only
                        # to patients who can become pregnant, cervical screening reminders
                        # only to patients with a cervix.
                        tr.gettext(
                            "your course dates, and whether you get contraception and "
                            "cervical screening reminders"
                        ),
                        # TRANSLATORS: consent list item.
                        tr.gettext("your Telegram chat ID"),
                        # TRANSLATORS: consent list item.
                        tr.gettext("when each reminder was delivered and how you answered"),
                    ),
                    # TRANSLATORS: consent text, after the list of stored data.
                    tr.gettext("Not stored: your name, date of birth or clinical notes."),
                ]
            ),
            "\n".join(
                [
                    # TRANSLATORS: consent text: the messages pass through Telegram's
                    # servers, so Telegram can tell the patient is in this programme.
                    tr.gettext(
                        "The messages travel through Telegram, which can therefore tell that "
                        "you are in this programme."
                    ),
                    # TRANSLATORS: consent text: who sees the data. The group chat is an
                    # optional chat of the clinic's staff that gets a copy of alerts.
                    tr.gettext(
                        "Your care team's coordinators and staff, the clinic's administrators "
                        "of this bot and, if set up, a staff group chat can see it."
                    ),
                    # TRANSLATORS: consent text.
                    tr.gettext(
                        "Your coordinator is told if you report symptoms, stop the reminders "
                        "or block the bot."
                    ),
                ]
            ),
            "\n".join(
                [
                    # TRANSLATORS: consent text. Keep /stop, /mydata and /forget exactly as
                    # they are: they are commands. Anonymous counts: how many reminders were
                    # delivered, with nothing that points to the patient.
                    tr.gettext(
                        "/stop ends the reminders and /mydata shows your data. /forget erases "
                        "everything about you, at any time (also after /stop); only anonymous "
                        "counts of delivered reminders remain."
                    ),
                    kept,
                    reach,
                ]
            ),
            # TRANSLATORS: consent text.
            tr.gettext(
                "This bot does not replace your MS team or emergency services. In an "
                "emergency, call your local emergency number."
            ),
            # TRANSLATORS: the last line of the consent text; %(version)d is its number.
            tr.gettext("Consent version %(version)d") % {"version": CONSENT_VERSION},
        ]
    )


def not_read_text(tr: Translator, *, contact: str | None) -> str:
    """The answer to a patient who writes to the bot: nobody reads it, whom to contact
    instead, the emergency line, and /help."""
    if contact:
        # TRANSLATORS: %(contact)s is the clinic's contact line as the clinic wrote it.
        reach = tr.gettext("For questions, contact your care team: %(contact)s") % {
            "contact": contact
        }
    else:
        # TRANSLATORS: when the clinic set no contact line.
        reach = tr.gettext("For questions, contact your MS team at your clinic.")
    return "\n".join(
        [
            # TRANSLATORS: the answer to a message a patient writes to the bot.
            tr.gettext("Messages sent here are not read by anyone."),
            reach,
            # TRANSLATORS: in the answer to a message a patient writes to the bot.
            tr.gettext("If this is an emergency, call your local emergency number now."),
            # TRANSLATORS: the last line of the answer to a message written to the bot.
            tr.gettext("Send /help to see what you can do."),
        ]
    )


def snooze_limit_text(tr: Translator) -> str:
    """When "Remind me tomorrow" was already used three times for a reminder."""
    # TRANSLATORS: shown when the patient has postponed a test reminder 3 times already.
    return tr.gettext(
        "You have already postponed this reminder 3 times. Please have your tests soon and "
        "then tap “%(done)s”."
    ) % {"done": tr.gettext(DONE)}

import gettext
import re
from datetime import date, time
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_file

import bot.messages
from bot.i18n import SOURCE_LOCALE, Translator, available_locales, translator
from bot.messages import (
    ACCEPT,
    CONSENT_VERSION,
    DATED_KINDS,
    DECLINE,
    DONE,
    FOOTER,
    IM_OK,
    MESSAGE_LIMIT,
    SNOOZE,
    SYMPTOMS,
    acknowledged_text,
    already_recorded_text,
    bundle_html,
    bundle_text,
    consent_text,
    lines_html,
    nudge_text,
    reminder_text,
    snoozed_text,
    symptoms_text,
)
from bot.messages import pages as messages_pages
from bot.texts import KIND_TITLES
from scheduler.protocol import TEST_KINDS, Kind

EN = translator("en")
# The worked example of PROTOCOL.md: courses on 2026-01-05 (5 days) and 2027-01-04 (3 days).
ABOUT = {
    Kind.COURSE_UPCOMING: date(2027, 1, 4),
    Kind.ANTIVIRAL_PROPHYLAXIS: date(2026, 2, 8),
    Kind.CONTRACEPTION: date(2026, 5, 9),
    Kind.CONTRACEPTION_END: date(2026, 5, 9),
    Kind.COURSE_DUE: date(2027, 1, 5),
    Kind.MONITORING_END: date(2031, 1, 6),
}
CERVICAL = "cervical screening"
DOSING = re.compile(r"\bmg\b|\d\s*g\b|\bdos(e|es|ed|ing|age)\b|\btake \d", re.IGNORECASE)


def every_text(tr: Translator) -> list[str]:
    """Every text a patient can be shown, in every variant."""
    texts = [
        reminder_text(kind, about=ABOUT.get(kind), cervix=cervix, tr=tr)
        for kind in Kind
        for cervix in (False, True)
    ]
    texts += [
        nudge_text(kinds, date(2026, 2, 5), days, tr)
        for kinds in ({Kind.LABS_MONTHLY}, {Kind.THYROID_QUARTERLY}, TEST_KINDS)
        for days in (1, 3, 7)
    ]
    texts += [symptoms_text(tr), snoozed_text(tr), acknowledged_text(tr), already_recorded_text(tr)]
    texts += [consent_text(tr)]
    texts += [tr.gettext(label) for label in (DONE, SNOOZE, SYMPTOMS, IM_OK, ACCEPT, DECLINE)]
    return texts


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_renders_with_its_title_and_one_footer(kind: Kind) -> None:
    text = reminder_text(kind, about=ABOUT.get(kind), cervix=False, tr=EN)
    assert text.startswith(KIND_TITLES[kind] + "\n")
    assert len(text) > len(KIND_TITLES[kind]) + len(FOOTER) + 20
    assert text.endswith("\n\n" + FOOTER)
    assert text.count(FOOTER) == 1


def test_dated_kinds_are_those_the_planner_gives_a_date() -> None:
    assert set(ABOUT) == DATED_KINDS


@pytest.mark.parametrize("kind", sorted(DATED_KINDS))
def test_dated_kinds_show_the_long_date(kind: Kind) -> None:
    text = reminder_text(kind, about=date(2026, 2, 5), cervix=True, tr=EN)
    assert "February 5, 2026" in text


@pytest.mark.parametrize("kind", sorted(DATED_KINDS))
def test_dated_kinds_need_the_date(kind: Kind) -> None:
    with pytest.raises(ValueError, match=str(kind)):
        reminder_text(kind, about=None, cervix=True, tr=EN)


def test_worked_example_dates() -> None:
    upcoming = reminder_text(Kind.COURSE_UPCOMING, about=date(2027, 1, 4), cervix=False, tr=EN)
    assert "Your treatment course starts on January 4, 2027." in upcoming
    ending = reminder_text(Kind.CONTRACEPTION_END, about=date(2026, 5, 9), cervix=True, tr=EN)
    assert "ends on May 9, 2026." in ending


def test_cervical_screening_only_with_a_cervix() -> None:
    without = reminder_text(Kind.ANNUAL_SCREENING, about=None, cervix=False, tr=EN)
    with_cervix = reminder_text(Kind.ANNUAL_SCREENING, about=None, cervix=True, tr=EN)
    assert "skin check" in without
    assert "skin check" in with_cervix
    assert CERVICAL not in without
    assert CERVICAL in with_cervix


def test_bundle_has_every_title_and_one_footer() -> None:
    text = bundle_text(
        [(Kind.LABS_MONTHLY, None), (Kind.THYROID_QUARTERLY, None)], cervix=False, tr=EN
    )
    labs = reminder_text(Kind.LABS_MONTHLY, about=None, cervix=False, tr=EN)
    assert KIND_TITLES[Kind.LABS_MONTHLY] in text
    assert KIND_TITLES[Kind.THYROID_QUARTERLY] in text
    assert text.index(KIND_TITLES[Kind.LABS_MONTHLY]) < text.index(
        KIND_TITLES[Kind.THYROID_QUARTERLY]
    )
    assert text.count(FOOTER) == 1
    assert text.endswith(FOOTER)
    assert text.startswith(labs.removesuffix(FOOTER))


def test_empty_bundle_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        bundle_text([], cervix=False, tr=EN)


def test_reminders_carry_their_protocol_content() -> None:
    labs = reminder_text(Kind.LABS_MONTHLY, about=None, cervix=False, tr=EN)
    for words in ("full blood count", "creatinine", "urine cell counts", "even if you feel well"):
        assert words in labs
    for words in ("bruising", "purple spots", "periods", "tea-coloured", "coughing up blood"):
        assert words in labs
    for words in ("yellow skin", "dark urine", "signs of infection"):
        assert words in labs
    warning = reminder_text(Kind.POST_INFUSION_WARNING, about=None, cervix=False, tr=EN)
    assert "emergency number at once" in warning
    for words in ("severe headache", "neck pain", "drooping", "one side", "speaking", "chest"):
        assert words in warning
    upcoming = reminder_text(Kind.COURSE_UPCOMING, about=date(2027, 1, 4), cervix=False, tr=EN)
    for words in ("steroid", "anti-herpes", "4 hours", "2 hours", "patient alert card"):
        assert words in upcoming


def test_no_placeholder_leftovers() -> None:
    for text in every_text(EN):
        assert text
        assert "%(" not in text
        assert "{" not in text
        assert "}" not in text


def test_no_dosing_instructions() -> None:
    for text in every_text(EN):
        assert not DOSING.search(text), text


def test_the_dosing_guard_bites() -> None:
    for dose in ("take 500 mg", "1 g methylprednisolone", "the same dose", "dosing"):
        assert DOSING.search(dose)


def test_plain_text_without_markup() -> None:
    for text in every_text(EN):
        assert not re.search(r"<[a-z/]|\*\*|__|`", text), text


@pytest.mark.parametrize("kind", sorted(TEST_KINDS))
def test_nudge_counts_days(kind: Kind) -> None:
    assert "1 day ago, on February 5, 2026." in nudge_text({kind}, date(2026, 2, 5), 1, EN)
    assert "3 days ago" in nudge_text({kind}, date(2026, 2, 5), 3, EN)
    assert "7 days ago" in nudge_text({kind}, date(2026, 2, 5), 7, EN)
    assert "“Done”" in nudge_text({kind}, date(2026, 2, 5), 3, EN)


def test_nudge_only_for_tests() -> None:
    with pytest.raises(ValueError, match="post_infusion_warning"):
        nudge_text({Kind.POST_INFUSION_WARNING}, date(2026, 2, 5), 3, EN)


def test_symptoms_text_is_urgent() -> None:
    text = symptoms_text(EN)
    assert text.splitlines()[0] == "If this is an emergency, call your local emergency number now."
    assert "today" in text


def test_consent_text_says_what_protocol_md_asks() -> None:
    """PROTOCOL.md "Consent: what the text must say", point by point."""
    text = consent_text(EN)
    assert f"Consent version {CONSENT_VERSION}" in text
    for said in (
        "alemtuzumab",
        "a pseudonymous label from your clinic (not your name)",  # what is stored
        "your language, time zone and reminder time",
        "contraception and cervical screening reminders",  # the flags
        "your course dates",
        "when each reminder was delivered and how you answered",
        "Not stored: your name, date of birth or clinical notes.",
        "The messages travel through Telegram",  # and so reveal the programme
        "can therefore tell that you are in this programme",
        "care team's coordinators and staff, the clinic's administrators",  # who sees what
        "a staff group chat",
        "Your coordinator is told if you report symptoms, stop the reminders or block the bot",
        "/stop ends the reminders",
        "/forget erases everything about you, at any time (also after /stop)",
        "only anonymous counts of delivered reminders remain",
        "Your data is kept until you ask for it to be erased.",  # retention, by default
        "contact your MS team at your clinic",  # contact, by default
        "call your local emergency number",
    ):
        assert said in text, said


def test_consent_text_carries_the_clinic_own_contact_and_retention() -> None:
    text = consent_text(
        EN, contact="MS nurse line +49 30 1234 5678", retention="10 years after your last course"
    )
    assert "For questions, contact your care team: MS nurse line +49 30 1234 5678" in text
    assert "How long your data is kept: 10 years after your last course" in text
    assert "until you ask for it to be erased" not in text


@pytest.mark.parametrize("locale", sorted(available_locales()))
def test_the_consent_text_fits_a_phone_screen(locale: str) -> None:
    assert len(consent_text(translator(locale))) < MESSAGE_LIMIT


def test_short_replies_are_one_line() -> None:
    for text in (snoozed_text(EN), acknowledged_text(EN), already_recorded_text(EN)):
        assert text
        assert "\n" not in text


class Marked(gettext.NullTranslations):
    """A pseudo-translation that marks every message it translates."""

    def gettext(self, message: str) -> str:
        return "»" + message

    def ngettext(self, msgid1: str, msgid2: str, n: int) -> str:
        return "»" + (msgid1 if n == 1 else msgid2)


def test_every_line_goes_through_the_catalog() -> None:
    for text in every_text(Translator("en", Marked())):
        for line in text.split("\n"):
            assert line == "" or line.removeprefix("• ").startswith("»"), line


def test_unknown_locale_falls_back_to_english() -> None:
    for locale in ("xx", "", "../etc"):
        tr = translator(locale)
        assert tr.locale == SOURCE_LOCALE
        assert tr.date(date(2026, 2, 5)) == "February 5, 2026"
        assert reminder_text(Kind.LABS_MONTHLY, about=None, cervix=False, tr=tr) == reminder_text(
            Kind.LABS_MONTHLY, about=None, cervix=False, tr=EN
        )


def test_dates_and_times_follow_the_locale_without_a_catalog() -> None:
    de = translator("de")
    assert de.date(date(2026, 2, 5)) == "5. Februar 2026"
    assert de.time(time(18, 0)) == "18:00"
    assert EN.time(time(18, 0)).startswith("6:00")
    assert translator("pt-BR").date(date(2026, 2, 5)) == "5 de fevereiro de 2026"


def test_translator_is_cached() -> None:
    assert translator("de") is translator("de")


def test_every_message_has_a_translator_comment() -> None:
    path = Path(bot.messages.__file__)
    keywords = {**DEFAULT_KEYWORDS, "N_": None}
    found = list(extract_from_file("python", path, keywords, ("TRANSLATORS:",)))
    assert len(found) > 50
    for _line, message, comments, _context in found:
        assert comments, message
        singular = message[0] if isinstance(message, tuple) else message
        assert not re.search(r"%[sd]", singular), "use named placeholders"
        assert "\n" not in singular, "one line per catalog entry"


def test_a_nudge_names_every_unconfirmed_test_of_its_message() -> None:
    both = nudge_text([Kind.LABS_MONTHLY, Kind.THYROID_QUARTERLY], date(2026, 2, 5), 3, EN)
    assert both.startswith(
        "Your monthly blood and urine tests and your thyroid blood test were due 3 days ago, "
        "on February 5, 2026.\nIf you have had them, tap “Done”."
    )
    assert "If you have had it," in nudge_text([Kind.THYROID_QUARTERLY], date(2026, 2, 5), 3, EN)


def _bundles() -> list[list[tuple[Kind, date | None]]]:
    """Every instant's reminders of plans that bundle the most: two courses a year apart
    to the day, can become pregnant, send time 18:00 (the tests meet the evening warning),
    a year of anti-herpes medicine."""
    from zoneinfo import ZoneInfo

    from scheduler.planner import Course, Profile, plan

    bundles = []
    for second in (date(2027, 1, 5), date(2026, 12, 6)):
        profile = Profile(
            courses=(Course(date(2026, 1, 5), 5), Course(second, 3)),
            timezone=ZoneInfo("Europe/Berlin"),
            send_time=time(18, 0),
            cbp=True,
            prophylaxis_days=365,
        )
        by_instant: dict[object, list[tuple[Kind, date | None]]] = {}
        for item in plan(profile):
            by_instant.setdefault(item.due, []).append((item.kind, item.about))
        bundles += list(by_instant.values())
    return bundles


@pytest.mark.parametrize("locale", sorted(available_locales()))
def test_every_message_fits_a_phone_screen(locale: str) -> None:
    tr = translator(locale)
    bundles = _bundles()
    assert max(len(bundle) for bundle in bundles) >= 5
    for bundle in bundles:
        pages = messages_pages(bundle, cervix=True, tr=tr)
        assert [i for page in pages for i in page] == list(range(len(bundle)))  # all, in order
        for page in pages:
            text = bundle_text([bundle[i] for i in page], cervix=True, tr=tr)
            assert len(text) <= MESSAGE_LIMIT, (locale, [bundle[i][0] for i in page], len(text))
            assert text.count(tr.gettext(FOOTER)) == 1
    for kind in Kind:
        single = reminder_text(kind, about=ABOUT.get(kind), cervix=True, tr=tr)
        assert len(single) <= MESSAGE_LIMIT, (locale, kind)


def test_a_short_bundle_is_one_message() -> None:
    parts = [(Kind.LABS_MONTHLY, None), (Kind.THYROID_QUARTERLY, None)]
    assert messages_pages(parts, cervix=False, tr=EN) == [[0, 1]]


@pytest.mark.parametrize("locale", sorted(available_locales()))
def test_reminders_in_html_show_exactly_the_plain_text(locale: str) -> None:
    """Every reminder kind, alone and bundled, is valid Telegram HTML (the fake Bot API
    parses it as Telegram does) and shows the same text as the plain version, titles bold."""
    from tests.fake_bot_api import _render_html

    tr = translator(locale)
    about = date(2027, 1, 4)
    parts = [(kind, about if kind in DATED_KINDS else None) for kind in Kind]
    for chosen in [[part] for part in parts] + [parts]:
        sent = bundle_html(chosen, cervix=True, tr=tr)
        assert _render_html(sent) == bundle_text(chosen, cervix=True, tr=tr), locale
        titles = [tr.gettext(KIND_TITLES[kind]) for kind, _ in chosen]
        assert sent.count("<b>") == len(titles)


def test_html_escapes_what_would_be_markup() -> None:
    from tests.fake_bot_api import _render_html

    tricky = ["<b>bold</b> & <i>not</i>", "a < b > c &amp; d"]
    assert [_render_html(line) for line in lines_html(tricky)] == tricky

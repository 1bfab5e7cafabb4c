"""The Babel catalogs: complete, consistent with the sources, and rendering in every locale."""

import re
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel import Locale
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.plurals import get_plural
from babel.messages.pofile import read_po, write_po

from bot import messages
from bot.i18n import available_locales, catalog_problems, locales_dir, negotiate, translator
from bot.texts import KIND_TITLES
from scheduler.planner import Course, Profile, plan
from scheduler.protocol import Kind
from scripts import catalogs as tool

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"en", "de", "fr", "es", "it", "pt_BR", "ru", "uk", "fa", "ar"}
TRANSLATED = sorted(SHIPPED - {"en"})
LABS_NUDGE = "Your monthly blood and urine tests were due"
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]|\{[a-z_]*\}")


def read(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale)


def template() -> Catalog:
    return read(locales_dir() / "messages.pot")


def catalog(locale: str) -> Catalog:
    return read(locales_dir() / locale / "LC_MESSAGES" / "messages.po", locale)


def forms(message: Message) -> list[str]:
    """The translation, as a list of its plural forms (one for a simple message)."""
    string = message.string
    return [string] if isinstance(string, str) else [str(s) for s in string or ()]


def ids(message: Message) -> list[str]:
    return [message.id] if isinstance(message.id, str) else [str(i) for i in message.id]


def test_ten_locales_ship() -> None:
    assert available_locales() == SHIPPED


def test_template_is_up_to_date_with_the_sources() -> None:
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    # The mapping of babel.cfg: Python sources and the web console's templates.
    with (ROOT / "babel.cfg").open(encoding="utf-8") as config:
        method_map, options_map = parse_mapping_cfg(config)  # type: ignore[no-untyped-call]
    extracted = {
        (msgid if isinstance(msgid, str) else msgid[0])
        for folder in ("bot", "scheduler")
        for _file, _line, msgid, _comments, _context in extract_from_dir(
            ROOT / folder,
            method_map=method_map,
            options_map=options_map,
            keywords=keywords,
            comment_tags=("TRANSLATORS:",),
            strip_comment_tags=True,
        )
    }
    in_template = {m.id if isinstance(m.id, str) else m.id[0] for m in template() if m.id}
    assert extracted - in_template == set(), "run python scripts/catalogs.py extract, then update"
    assert in_template - extracted == set(), "the template has messages the sources no longer use"


@pytest.mark.parametrize("locale", TRANSLATED)
def test_catalog_is_complete_and_consistent(locale: str) -> None:
    expected = {m.id for m in template() if m.id}
    po = catalog(locale)
    found = {m.id for m in po if m.id}
    assert expected - found == set(), f"{locale}: run pybabel update (messages missing)"
    assert found - expected == set(), f"{locale}: run pybabel update (obsolete messages)"
    plurals = get_plural(locale)
    change = tool.plural_change(locale, locales_dir() / locale / "LC_MESSAGES" / "messages.po")
    assert change is None or change.same_numbers, (
        f"{change.describe()}; run {tool.UPDATE_COMMAND!r} and translate the forms it marks fuzzy"
    )
    problems = []
    for message in po:
        if not message.id:
            continue
        if message.fuzzy:
            problems.append(f"fuzzy: {message.id!r}")
        translations = forms(message)
        if not all(translations):
            problems.append(f"untranslated: {message.id!r}")
            continue
        if message.pluralizable and len(translations) != plurals.num_plurals:
            problems.append(f"{len(translations)} plural forms: {message.id!r}")
        wanted = set(PLACEHOLDER.findall(ids(message)[-1]))
        for text in translations:
            if set(PLACEHOLDER.findall(text)) != wanted:
                problems.append(f"placeholders differ: {message.id!r} -> {text!r}")
    assert problems == []


@pytest.mark.parametrize("locale", sorted(SHIPPED))
def test_every_message_renders_in_every_locale(locale: str) -> None:
    tr = translator(locale)
    assert tr.locale == locale
    about = date(2027, 1, 4)
    for kind in Kind:
        text = messages.reminder_text(
            kind, about=about if kind in messages.DATED_KINDS else None, cervix=True, tr=tr
        )
        assert text.strip()
        assert "%(" not in text
        assert "{" not in text
        if kind in messages.DATED_KINDS:
            assert tr.date(about) in text
        if locale != "en":
            assert tr.gettext(KIND_TITLES[kind]) != KIND_TITLES[kind], (locale, kind)
    consent = messages.consent_text(tr)
    assert str(messages.CONSENT_VERSION) in consent
    if locale != "en":
        assert consent != messages.consent_text(translator("en"))
    for text in (
        messages.symptoms_text(tr),
        messages.symptoms_reported_text(tr, told=True),
        messages.symptoms_reported_text(tr, told=False),
        messages.snoozed_text(tr),
        messages.acknowledged_text(tr),
        messages.already_recorded_text(tr),
        messages.snooze_limit_text(tr),
        messages.nudge_text({Kind.LABS_MONTHLY}, about, 3, tr),
    ):
        assert text.strip()
        assert "%(" not in text


def test_worked_example_in_german_and_russian() -> None:
    profile = Profile(
        courses=(Course(date(2026, 1, 5), 5), Course(date(2027, 1, 4), 3)),
        timezone=ZoneInfo("Europe/Berlin"),
    )
    items = plan(profile)
    upcoming = next(i for i in items if i.kind is Kind.COURSE_UPCOMING and i.course == 2)
    end = next(i for i in items if i.kind is Kind.MONITORING_END)
    de, ru = translator("de"), translator("ru")
    assert "4. Januar 2027" in messages.reminder_text(
        upcoming.kind, about=upcoming.about, cervix=False, tr=de
    )
    assert "6. Januar 2031" in messages.reminder_text(
        end.kind, about=end.about, cervix=False, tr=de
    )
    assert "4 января 2027\u202fг." in messages.reminder_text(
        upcoming.kind, about=upcoming.about, cervix=False, tr=ru
    )
    labs = next(i for i in items if i.kind is Kind.LABS_MONTHLY)
    assert "5 февраля 2026\u202fг." in messages.nudge_text({labs.kind}, labs.day, 3, ru)
    assert "5. Februar 2026" in messages.nudge_text({labs.kind}, labs.day, 3, de)


@pytest.mark.parametrize(("count", "form"), [(1, 0), (2, 1), (5, 2), (21, 0), (22, 1), (11, 2)])
def test_russian_plural_forms(count: int, form: int) -> None:
    po = catalog("ru")
    message = next(m for m in po if m.pluralizable and ids(m)[0].startswith(LABS_NUDGE))
    ru = translator("ru")
    text = messages.nudge_text({Kind.LABS_MONTHLY}, date(2026, 2, 5), count, ru)
    assert forms(message)[form] % {"count": count, "date": ru.date(date(2026, 2, 5))} in text


@pytest.mark.parametrize(
    ("count", "form"), [(0, 0), (1, 1), (2, 2), (3, 3), (11, 4), (99, 4), (100, 5), (102, 5)]
)
def test_arabic_plural_forms(count: int, form: int) -> None:
    po = catalog("ar")
    message = next(m for m in po if m.pluralizable and ids(m)[0].startswith(LABS_NUDGE))
    assert len(forms(message)) == 6
    ar = translator("ar")
    text = messages.nudge_text({Kind.LABS_MONTHLY}, date(2026, 2, 5), count, ar)
    assert forms(message)[form] % {"count": count, "date": ar.date(date(2026, 2, 5))} in text


@pytest.mark.parametrize("locale", ["fr", "es", "it", "pt_BR"])
def test_a_million_takes_the_many_form(locale: str) -> None:
    po = catalog(locale)
    message = next(m for m in po if m.pluralizable and "reminders sent" in ids(m)[1])
    singular, plural = ids(message)
    tr = translator(locale)
    many = tr.ngettext(singular, plural, 1_000_000) % {"count": 1_000_000}
    assert many == forms(message)[1] % {"count": 1_000_000}
    assert many != tr.ngettext(singular, plural, 7) % {"count": 1_000_000}


def test_update_moves_translations_to_the_forms_of_a_new_plural_rule(tmp_path: Path) -> None:
    """What the tool does when CLDR changes a rule: French going from 2 forms to 3."""
    old = Catalog(locale="fr")
    old.mime_headers = [*old.mime_headers, ("Plural-Forms", "nplurals=2; plural=(n > 1);")]
    old.add(("%(count)d day", "%(count)d days"), ("%(count)d jour", "%(count)d jours"))
    path = tmp_path / "messages.po"
    with path.open("wb") as file:
        write_po(file, old)
    change = tool.plural_change("fr", path)
    assert change is not None
    assert not change.same_numbers
    assert "nplurals=3" in change.new
    assert tool.apply_plural_rule(change) == ["%(count)d day"]
    [message] = [m for m in read(path, "fr") if m.id]
    # one (0, 1) keeps its text; many (a million) and other (2, 3, …) start from "jours",
    # and the message waits for a translator.
    assert forms(message) == ["%(count)d jour", "%(count)d jours", "%(count)d jours"]
    assert message.fuzzy
    assert tool.plural_change("fr", path) is None


def test_a_rule_written_differently_but_equal_changes_only_the_header() -> None:
    russian = "(n%10==1 && n%100!=11 ? 0 : n%10>=2 && n%10<=4 && (n%100<10 || n%100>=20) ? 1 : 2)"
    assert tool.same_rule(russian, get_plural("ru").plural_expr, 3, 3)
    assert not tool.same_rule("(n != 1)", "(n > 1)", 2, 2)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("pt-BR", "pt_BR"),
        ("pt-br", "pt_BR"),
        ("pt", "pt_BR"),
        ("de-AT", "de"),
        ("de", "de"),
        ("uk", "uk"),
        ("zh", "en"),
        ("zh-Hans", "en"),
        ("xx-YY", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_negotiation(code: str | None, expected: str) -> None:
    assert negotiate(code, default="en") == expected


def test_rtl_dates_are_isolated_from_the_sentence() -> None:
    for locale in ("fa", "ar"):
        assert Locale.parse(locale).text_direction == "rtl"
        text = translator(locale).date(date(2026, 2, 5))
        assert text.startswith("\u2068")
        assert text.endswith("\u2069")
    assert not translator("de").date(date(2026, 2, 5)).startswith("\u2068")


def test_missing_catalogs_are_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert catalog_problems() == []
    (tmp_path / "de" / "LC_MESSAGES").mkdir(parents=True)
    (tmp_path / "de" / "LC_MESSAGES" / "messages.po").write_bytes(b"")
    monkeypatch.setattr("bot.i18n.locales_dir", lambda: tmp_path)
    problems = catalog_problems()
    assert "fr: no catalog" in problems
    assert "de: the catalog translates nothing" in problems

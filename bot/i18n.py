"""Translations from the Babel catalogs in ``locales/``.

Catalogs are compiled from their ``.po`` source when first loaded, so a compiled file can
never be stale. English is the source language: its text is the msgid itself, and every
other language falls back to it message by message, never to an empty string.

Babel is imported where a catalog, a date or a locale is first needed: English texts (the
command line's help) need none of it, and ``remindbot --help`` should start at once.
"""

from __future__ import annotations

import gettext as _gettext
from dataclasses import dataclass
from datetime import date, time
from functools import cache, lru_cache
from io import BytesIO
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel import Locale
    from babel.dates import DateTimePattern

SOURCE_LOCALE = "en"
DOMAIN = "messages"
# The languages the bot ships; a missing or empty catalog among them is reported.
SHIPPED_LOCALES = frozenset({"en", "de", "fr", "es", "it", "pt_BR", "ru", "uk", "fa", "ar"})
# Unicode isolates keep a date whole inside right-to-left text.
_ISOLATE, _POP_ISOLATE = "\u2068", "\u2069"


def locales_dir() -> Path:
    """``locales/`` in a source checkout, or its copy inside the installed ``bot`` package."""
    packaged = Path(__file__).resolve().parent / "locales"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parent.parent / "locales"


def _catalog_path(locale: str) -> Path:
    return locales_dir() / locale / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def available_locales() -> frozenset[str]:
    """Every locale with a catalog, plus the source language."""
    found = {path.parent.parent.name for path in locales_dir().glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return frozenset(found | {SOURCE_LOCALE})


@cache
def translations(locale: str) -> _gettext.NullTranslations:
    """The catalog of ``locale`` with English behind it; English itself for the source."""
    source = _gettext.NullTranslations()
    path = _catalog_path(locale)
    if locale == SOURCE_LOCALE or not path.is_file():
        return source
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with path.open("rb") as po:
        catalog = read_po(po, locale=locale)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    loaded = Translations(fp=compiled, domain=DOMAIN)
    loaded.add_fallback(source)
    return loaded


def gettext(message: str, locale: str = SOURCE_LOCALE) -> str:
    """``message`` translated into ``locale``."""
    return translations(locale).gettext(message)


def ngettext(singular: str, plural: str, n: int, locale: str = SOURCE_LOCALE) -> str:
    """The form of ``singular``/``plural`` that fits ``n``, translated into ``locale``."""
    return translations(locale).ngettext(singular, plural, n)


@dataclass(frozen=True, slots=True)
class Translator:
    """Texts, dates and times in one language: what a message needs to render."""

    locale: str
    catalog: _gettext.NullTranslations

    def gettext(self, message: str) -> str:
        """``message`` translated."""
        return self.catalog.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        """The translated form of ``singular``/``plural`` that fits the number ``n``."""
        return self.catalog.ngettext(singular, plural, n)

    def date(self, day: date) -> str:
        """``day`` as a long date: "February 5, 2026", "5. Februar 2026"; isolated from
        the surrounding sentence in right-to-left languages."""
        formats = _formats(self.locale)
        text = formats.long_date.apply(day, formats.locale)
        return f"{_ISOLATE}{text}{_POP_ISOLATE}" if formats.rtl else text

    def time(self, at: time) -> str:
        """A time of day in the short form: "9:00 AM", "09:00"."""
        formats = _formats(self.locale)
        return formats.short_time.apply(at, formats.locale)


def _babel_locale(locale: str) -> Locale:
    from babel import Locale

    # Telegram and browsers write "pt-BR", CLDR writes "pt_BR".
    return Locale.parse(locale.replace("-", "_"))


@dataclass(frozen=True, slots=True)
class _Formats:
    locale: Locale
    long_date: DateTimePattern
    short_time: DateTimePattern
    rtl: bool


@lru_cache(maxsize=64)
def _formats(locale: str) -> _Formats:
    """A locale's date and time patterns, parsed once: what ``babel.dates.format_date``
    and ``format_time`` look up on every call (a page of the console formats hundreds)."""
    parsed = _babel_locale(locale)
    return _Formats(
        locale=parsed,
        long_date=parsed.date_formats["long"],
        short_time=parsed.time_formats["short"],
        rtl=parsed.text_direction == "rtl",
    )


@lru_cache(maxsize=64)
def translator(locale: str) -> Translator:
    """The translator for ``locale``.

    A locale Babel does not know (a typo, an empty string) falls back to English, the
    source language, for texts and for dates. A locale Babel knows but the bot has no
    catalog for gets English texts with dates and times formatted for that locale; a
    partial catalog falls back to English message by message (see ``translations``).
    """
    from babel import UnknownLocaleError

    try:
        _babel_locale(locale)
    except (ValueError, UnknownLocaleError):
        locale = SOURCE_LOCALE
    return Translator(locale, translations(locale))


def negotiate(language_code: str | None, *, default: str) -> str:
    """The shipped locale that best fits a Telegram ``language_code`` ("pt-br", "de-AT",
    "pt"), or ``default`` when none fits."""
    if not language_code:
        return default
    from babel import Locale

    wanted = language_code.replace("-", "_")
    shipped = sorted(available_locales())
    match = Locale.negotiate([wanted], shipped, sep="_")
    if match:
        return str(match)
    # A bare language ("pt") takes the shipped regional variant ("pt_BR").
    language = wanted.split("_")[0].lower()
    return next((code for code in shipped if code.split("_")[0].lower() == language), default)


def catalog_problems() -> list[str]:
    """What is wrong with the shipped catalogs: missing, unreadable, or translating nothing.

    Babel falls back to untranslated text silently; this makes the gap visible at start-up
    and in ``remindbot doctor``.
    """
    from babel.messages.pofile import read_po

    problems = []
    for locale in sorted(SHIPPED_LOCALES - {SOURCE_LOCALE}):
        path = _catalog_path(locale)
        if not path.is_file():
            problems.append(f"{locale}: no catalog")
            continue
        try:
            with path.open("rb") as po:
                catalog = read_po(po, locale=locale)
        except Exception as error:  # a broken file, whatever the parser says
            problems.append(f"{locale}: unreadable catalog ({type(error).__name__})")
            continue
        if not any(message.id and message.string for message in catalog):
            problems.append(f"{locale}: the catalog translates nothing")
    return problems

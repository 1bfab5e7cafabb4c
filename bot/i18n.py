"""Translations from the Babel catalogs in ``locales/``.

Catalogs are compiled from their ``.po`` source when first loaded, so a compiled file can
never be stale. English is the source language: its text is the msgid itself, and every
other language falls back to it message by message, never to an empty string.
"""

from __future__ import annotations

import gettext as _gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

SOURCE_LOCALE = "en"
DOMAIN = "messages"


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

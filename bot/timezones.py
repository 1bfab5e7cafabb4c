"""Time zones as people read them: their cities in the reader's language (from CLDR, through
Babel), the zones offered first to speakers of each language, and the parser that also
knows those names (``Москва``, ``القاهرة``, ``Wien`` as well as ``Europe/Vienna``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

from babel import Locale
from babel.core import get_global
from babel.dates import get_timezone_location
from babel.lists import format_list

from scheduler.errors import TimezoneNearMiss, UnknownTimezone
from scheduler.validation import parse_timezone, place_timezones

# The zones where most speakers of each shipped language live, offered first; the rest of
# the world types a city.
REGION_ZONES: Final[dict[str, tuple[str, ...]]] = {
    "en": (
        "Europe/London",
        "Europe/Dublin",
        "America/New_York",
        "America/Chicago",
        "America/Denver",
        "America/Los_Angeles",
        "America/Toronto",
        "America/Vancouver",
        "Australia/Sydney",
        "Pacific/Auckland",
    ),
    "de": ("Europe/Berlin", "Europe/Vienna", "Europe/Zurich"),
    "fr": (
        "Europe/Paris",
        "Europe/Brussels",
        "Europe/Luxembourg",
        "Europe/Zurich",
        "America/Toronto",
        "Africa/Casablanca",
        "Africa/Algiers",
        "Africa/Tunis",
        "Africa/Dakar",
        "Africa/Abidjan",
    ),
    "es": (
        "Europe/Madrid",
        "Atlantic/Canary",
        "America/Mexico_City",
        "America/Bogota",
        "America/Lima",
        "America/Santiago",
        "America/Argentina/Buenos_Aires",
        "America/Caracas",
        "America/Montevideo",
    ),
    "it": ("Europe/Rome", "Europe/Zurich"),
    "pt_BR": (
        "America/Sao_Paulo",
        "America/Bahia",
        "America/Fortaleza",
        "America/Recife",
        "America/Belem",
        "America/Manaus",
        "America/Cuiaba",
        "America/Campo_Grande",
        "America/Porto_Velho",
        "America/Rio_Branco",
        "America/Noronha",
    ),
    # Moscow, then one zone for each other hour of Russia, west to east; Belarus, Kazakhstan.
    "ru": (
        "Europe/Moscow",
        "Europe/Kaliningrad",
        "Europe/Samara",
        "Asia/Yekaterinburg",
        "Asia/Omsk",
        "Asia/Novosibirsk",
        "Asia/Irkutsk",
        "Asia/Yakutsk",
        "Asia/Vladivostok",
        "Asia/Magadan",
        "Asia/Kamchatka",
        "Europe/Minsk",
        "Asia/Almaty",
    ),
    "uk": ("Europe/Kyiv",),
    "fa": ("Asia/Tehran", "Asia/Kabul", "Asia/Dushanbe"),
    "ar": (
        "Asia/Riyadh",
        "Africa/Cairo",
        "Asia/Dubai",
        "Asia/Kuwait",
        "Asia/Qatar",
        "Asia/Baghdad",
        "Asia/Amman",
        "Asia/Beirut",
        "Asia/Damascus",
        "Africa/Casablanca",
        "Africa/Algiers",
        "Africa/Tunis",
    ),
}
# Unicode isolates keep a Latin id whole inside right-to-left text (as dates, bot.i18n).
_ISOLATE, _POP_ISOLATE = "\u2068", "\u2069"


def _babel(locale: str) -> Locale:
    return Locale.parse(locale.replace("-", "_"))


def region_zones(locale: str) -> tuple[str, ...]:
    """The zones offered first to a reader of ``locale`` ("pt_BR", "de_AT", "ru")."""
    code = locale.replace("-", "_")
    return REGION_ZONES.get(code) or REGION_ZONES.get(code.partition("_")[0], ())


def offered(locale: str, common: Iterable[str], *, regional: int | None = None) -> list[str]:
    """The zones of ``locale``'s region (the first ``regional`` of them), then the
    ``common`` ones, each once."""
    return list(dict.fromkeys([*region_zones(locale)[:regional], *common]))


def city(zone: str, locale: str) -> str:
    """The zone's city in the reader's language: "Moscow", "Москва", "موسكو"; an id that
    names no place (UTC, Etc/GMT-3: CLDR would write "GMT-3" for UTC+3) as it is."""
    if "/" not in zone or zone.startswith("Etc/"):
        return zone
    return get_timezone_location(zone, locale=_babel(locale), return_city=True)


def place(zone: str, locale: str) -> str:
    """The zone's country and city, for a patient to check: "Argentina (San Juan)" is not
    Puerto Rico's San Juan; "Россия (Москва)", "مصر (القاهرة)"."""
    name = city(zone, locale)
    babel = _babel(locale)
    territory = get_global("zone_territories").get(get_global("zone_aliases").get(zone, zone))
    country = babel.territories.get(territory) if territory else None
    if name == zone or not country or country == name:
        return name
    return str(babel.zone_formats["fallback"] % {"0": name, "1": country})


def _isolated(text: str, locale: str) -> str:
    rtl = _babel(locale).text_direction == "rtl"
    return f"{_ISOLATE}{text}{_POP_ISOLATE}" if rtl else text


def with_id(zone: str, locale: str) -> str:
    """The city and the id, for coordinators: "Berlin (Europe/Berlin)"."""
    name = city(zone, locale)
    return zone if name == zone else f"{name} ({_isolated(zone, locale)})"


@lru_cache(maxsize=32)
def local_names(locale: str) -> Mapping[str, str]:
    """Every zone's city in ``locale``, mapped to the zone; a name two zones share is left
    out, so that a name always means one zone."""
    names: dict[str, str] = {}
    shared: set[str] = set()
    for zone in sorted(place_timezones()):
        name = city(zone, locale)
        if name in names:
            shared.add(name)
        names[name] = zone
    return {name: zone for name, zone in names.items() if name not in shared}


def parse(text: str, locale: str, *, ids: bool = False) -> ZoneInfo:
    """``scheduler.validation.parse_timezone`` that also knows the cities' names in
    ``locale``; an error quotes the suggestions as the reader reads them (and their ids if
    ``ids``, for coordinators)."""
    try:
        return parse_timezone(text, names=local_names(locale))
    except TimezoneNearMiss as error:
        names = [with_id(z, locale) if ids else city(z, locale) for z in error.suggestions]
        raise TimezoneNearMiss(
            value=_isolated(str(error.params["value"]), locale),
            suggestions=error.suggestions,
            listed=format_list(names, style="or", locale=_babel(locale)),
        ) from None
    except UnknownTimezone as error:
        raise UnknownTimezone(value=_isolated(str(error.params["value"]), locale)) from None

"""Turn what a coordinator typed into planner input, or raise one clear error.

Every function either returns a complete, valid value or raises a
:class:`~scheduler.errors.ValidationError`; nothing is half-built.
"""

from __future__ import annotations

import re
import unicodedata
import zoneinfo
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from difflib import get_close_matches
from functools import cache
from importlib import resources
from pathlib import Path
from zoneinfo import ZoneInfo

from scheduler.errors import (
    CoursesOutOfOrder,
    CourseTooEarly,
    InvalidCourseDays,
    InvalidDate,
    InvalidProphylaxisDays,
    InvalidSendTime,
    NoCourses,
    SendTimeOutOfRange,
    TimezoneNearMiss,
    TooManyCourses,
    UnknownTimezone,
    UnsupportedLocale,
    ValidationWarning,
)
from scheduler.planner import Course, Profile
from scheduler.protocol import (
    COURSE_INTERVAL_MONTHS,
    COURSE_WINDOW_DAYS,
    DEFAULT_PROPHYLAXIS_DAYS,
    DEFAULT_SEND_TIME,
    EARLIEST_SEND_TIME,
    EU_MAX_COURSES,
    FIRST_COURSE_DAYS,
    LATER_COURSE_DAYS,
    LATEST_SEND_TIME,
    MAX_COURSE_DAYS,
    MAX_PROPHYLAXIS_DAYS,
    MIN_COURSE_DAYS,
    add_months,
)

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_TIME = re.compile(r"(\d{1,2}):(\d{2})", re.ASCII)

CourseSpec = tuple[date, int | None]
"""A course as entered: its start date and, if given, its number of infusion days."""


def parse_date(text: str) -> date:
    """A calendar date written as YYYY-MM-DD."""
    value = text.strip()
    if _DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidDate(value=value)


def parse_course(text: str, *, number: int) -> CourseSpec:
    """``DATE`` or ``DATE:DAYS``, as on the command line and in CSV files."""
    start, sep, days = text.strip().partition(":")
    if not sep:
        return parse_date(start), None
    return parse_date(start), parse_course_days(days, number=number)


def parse_course_days(text: str, *, number: int) -> int:
    """A number of infusion days, 1 to 5."""
    value = text.strip()
    if value.isascii() and value.isdigit() and MIN_COURSE_DAYS <= int(value) <= MAX_COURSE_DAYS:
        return int(value)
    raise InvalidCourseDays(number=number, value=value)


def default_course_days(number: int) -> int:
    """Infusion days of course ``number`` when the coordinator does not say otherwise."""
    return FIRST_COURSE_DAYS if number == 1 else LATER_COURSE_DAYS


def earliest_next_start(previous: Course) -> date:
    """The first day the following course may start without an override."""
    opens = add_months(previous.start, COURSE_INTERVAL_MONTHS)
    return opens - timedelta(days=COURSE_WINDOW_DAYS)


def next_course(
    recorded: Sequence[Course], start: date, days: int | None, *, allow_early: bool = False
) -> tuple[Course, list[ValidationWarning]]:
    """The course after ``recorded`` (already accepted), checked against the last of them.

    ``allow_early`` is the coordinator's confirmed override for a course that starts less
    than 12 months (minus the 30-day window) after the previous one.
    """
    number = len(recorded) + 1
    if days is None:
        days = default_course_days(number)
    elif not MIN_COURSE_DAYS <= days <= MAX_COURSE_DAYS:
        raise InvalidCourseDays(number=number, value=str(days))
    if recorded:
        previous = recorded[-1]
        if start <= previous.end:
            raise CoursesOutOfOrder(
                number=number,
                start=start.isoformat(),
                previous=number - 1,
                previous_end=previous.end.isoformat(),
            )
        if start < earliest_next_start(previous) and not allow_early:
            raise CourseTooEarly(
                number=number,
                start=start.isoformat(),
                previous=number - 1,
                previous_start=previous.start.isoformat(),
                earliest=earliest_next_start(previous).isoformat(),
            )
    warnings: list[ValidationWarning] = []
    if number > EU_MAX_COURSES:
        warnings.append(TooManyCourses(number=number, limit=EU_MAX_COURSES))
    return Course(start, days), warnings


def build_courses(
    specs: Sequence[CourseSpec], *, allow_early: bool = False
) -> tuple[tuple[Course, ...], list[ValidationWarning]]:
    """Courses with their default days filled in, each checked against the one before."""
    if not specs:
        raise NoCourses()
    courses: list[Course] = []
    warnings: list[ValidationWarning] = []
    for start, days in specs:
        course, more = next_course(courses, start, days, allow_early=allow_early)
        courses.append(course)
        warnings += more
    return tuple(courses), warnings


# Longer text names no zone (the longest IANA id has 32 characters) and gets no suggestions.
MAX_TIMEZONE_TEXT = 64
SUGGESTIONS = 3
# Ids of the tz database that are not places: "Factory" is no time at all.
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})
# Kinds of time rather than places: tz links CET to Europe/Brussels, which would surprise.
_KINDS_OF_TIME = frozenset({"CET", "EET", "MET", "WET", "EST", "MST", "HST"})
# The areas of ids whose last part is a city ("US/Eastern", "Etc/GMT+5" are not cities).
_AREAS = frozenset(
    {"Africa", "America", "Antarctica", "Arctic", "Asia", "Atlantic", "Australia", "Europe"}
    | {"Indian", "Pacific"}
)
# Old ids whose last part is no city a reader would mean: Pacific/Samoa is American Samoa,
# a day apart from Samoa; Victoria is also a city in Canada and the Seychelles.
_NOT_CITIES = frozenset(
    {"Australia/North", "Australia/South", "Australia/West", "Australia/Victoria"}
    | {"Pacific/Samoa"}
)
# Places people name that are no part of a zone's id, each in a country with one zone
# (or, for the US, clearly in one).
TIMEZONE_ALIASES = {
    "abu dhabi": "Asia/Dubai",
    "american samoa": "Pacific/Pago_Pago",
    "ankara": "Europe/Istanbul",
    "barcelona": "Europe/Madrid",
    "beijing": "Asia/Shanghai",
    "bombay": "Asia/Kolkata",
    "brasilia": "America/Sao_Paulo",
    "cologne": "Europe/Berlin",
    "delhi": "Asia/Kolkata",
    "frankfurt": "Europe/Berlin",
    "geneva": "Europe/Zurich",
    "hamburg": "Europe/Berlin",
    "iceland": "Atlantic/Reykjavik",
    "isfahan": "Asia/Tehran",
    "jeddah": "Asia/Riyadh",
    "kazan": "Europe/Moscow",
    "kharkiv": "Europe/Kyiv",
    "kharkov": "Europe/Kyiv",
    "lviv": "Europe/Kyiv",
    "mashhad": "Asia/Tehran",
    "mecca": "Asia/Riyadh",
    "milan": "Europe/Rome",
    "moskva": "Europe/Moscow",
    "mumbai": "Asia/Kolkata",
    "munich": "Europe/Berlin",
    "münchen": "Europe/Berlin",
    "new delhi": "Asia/Kolkata",
    "odesa": "Europe/Kyiv",
    "peking": "Asia/Shanghai",
    "rio de janeiro": "America/Sao_Paulo",
    "samoa": "Pacific/Apia",
    "san francisco": "America/Los_Angeles",
    "washington dc": "America/New_York",
    "wien": "Europe/Vienna",
}
_SEPARATORS = re.compile(r"[\s_-]+")
_SLASH = re.compile(r"\s*/\s*")
_PUNCTUATION = frozenset("/_-+.,'’() \u200c\u200d")  # ZWNJ and ZWJ are part of Persian words
# Arabic and Persian keyboards write these letters differently; the names are the same.
_FOLDED_LETTERS = str.maketrans({"ي": "ی", "ى": "ی", "ك": "ک", ".": "", "'": "", "’": ""})


def _fold(text: str) -> str:
    """``text`` as names are compared: case, accents, ``_``/``-``/spaces and dots ignored."""
    decomposed = unicodedata.normalize("NFKD", text.casefold().translate(_FOLDED_LETTERS))
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _SLASH.sub("/", _SEPARATORS.sub(" ", plain)).strip()


def _typable(text: str) -> bool:
    return all(
        char.isalnum() or char in _PUNCTUATION or unicodedata.category(char).startswith("M")
        for char in text
    )


def _tz_texts(*names: str) -> list[str]:
    """Files of the tz database from where zoneinfo reads zones (its path, then tzdata)."""
    for directory in zoneinfo.TZPATH:
        paths = [Path(directory, name) for name in names]
        if all(path.is_file() for path in paths):
            return [path.read_text(encoding="utf-8") for path in paths]
    try:
        package = resources.files("tzdata.zoneinfo")
        return [package.joinpath(name).read_text(encoding="utf-8") for name in names]
    except (ImportError, OSError):
        return ["" for _ in names]


def _renamed(known: frozenset[str]) -> dict[str, str]:
    """Old ids and the current id tz links them to (the same clock): Europe/Kiev ->
    Europe/Kyiv, US/Eastern -> America/New_York. An id that a country still uses stays."""
    links, *tables = _tz_texts("tzdata.zi", "zone1970.tab", "zone.tab")
    in_use = {
        line.split("\t")[2]
        for table in tables
        for line in table.splitlines()
        if line and not line.startswith("#")
    }
    renamed = {}
    for line in links.splitlines():
        if line.startswith("L "):
            _, target, name = line.split()
            if name in in_use or name in _KINDS_OF_TIME or target.startswith("Etc/"):
                continue
            if name in known and target in known:
                renamed[name] = target
    return renamed


@dataclass(frozen=True)
class _ZoneIndex:
    names: dict[str, str]  # folded name -> current IANA id
    ambiguous: dict[str, tuple[str, ...]]  # a city of several zones -> their ids
    ids: tuple[str, ...]  # the folded names with a "/"
    words: tuple[str, ...]  # and those without
    places: frozenset[str]  # the ids a suggestion may name


@cache
def _index() -> _ZoneIndex:
    known = frozenset(zoneinfo.available_timezones()) - _NOT_ZONES
    renamed = _renamed(known)
    names = {_fold(key): renamed.get(key, key) for key in known}
    cities: dict[str, set[str]] = {}
    for key in known:
        area, _, city = key.rpartition("/")
        if area.partition("/")[0] in _AREAS and key not in _NOT_CITIES:
            cities.setdefault(_fold(city), set()).add(renamed.get(key, key))
    ambiguous = {}
    for city, zones in cities.items():
        if len(zones) > 1:
            ambiguous[city] = tuple(sorted(zones))
        elif city not in names:
            [names[city]] = zones
    names |= {_fold(alias): zone for alias, zone in TIMEZONE_ALIASES.items() if zone in known}
    return _ZoneIndex(
        names=names,
        ambiguous=ambiguous,
        ids=tuple(sorted(name for name in names if "/" in name)),
        words=tuple(sorted(name for name in names if "/" not in name)),
        places=frozenset(
            zone for zone in names.values() if "/" in zone and not zone.startswith("Etc/")
        ),
    )


def place_timezones() -> frozenset[str]:
    """The current IANA ids of the zones people live in (no Etc/GMT+5, no US/Eastern)."""
    return _index().places


def _suggestions(key: str, index: _ZoneIndex, local: dict[str, str]) -> tuple[str, ...]:
    """Up to three zones whose names are close to ``key`` (typos, a wrong area)."""
    if "/" in key:
        city = key.rpartition("/")[2]
        found = [index.names[city]] if city in index.words else []
        found += (
            index.names[name]
            for name in get_close_matches(city, index.words, n=SUGGESTIONS, cutoff=0.75)
        )
        found += (
            index.names[name]
            for name in get_close_matches(key, index.ids, n=SUGGESTIONS, cutoff=0.85)
        )
    else:
        words = {**{word: index.names[word] for word in index.words}, **local}
        found = [words[name] for name in get_close_matches(key, words, n=6, cutoff=0.75)]
    unique = dict.fromkeys(zone for zone in found if zone in index.places)
    return tuple(unique)[:SUGGESTIONS]


def parse_timezone(text: str, *, names: Mapping[str, str] | None = None) -> ZoneInfo:
    """A time zone, under its current IANA id: named by that id in any case
    (``europe/berlin``), by an old id (``Europe/Kiev``), by a city in it, with spaces or
    underscores and with or without accents (``berlin``, ``new york``, ``sao paulo``), by a
    common alias (``bombay``) or by one of ``names`` (the zones' names in the reader's
    language, each with its id: ``{"Москва": "Europe/Moscow"}``).

    A near miss raises :class:`TimezoneNearMiss` with up to three suggestions; anything else
    :class:`UnknownTimezone`.
    """
    value = text.strip()
    if not value or len(value) > MAX_TIMEZONE_TEXT or not _typable(value):
        clipped = value if len(value) <= MAX_TIMEZONE_TEXT else value[:MAX_TIMEZONE_TEXT] + "…"
        raise UnknownTimezone(value=clipped)
    index = _index()
    key = _fold(value)
    zone = index.names.get(key)
    local = {}
    if zone is None:
        local = {_fold(n): z for n, z in (names or {}).items() if z in index.places}
        zone = local.get(key)
    if zone is not None:
        return ZoneInfo(zone)
    suggestions = index.ambiguous.get(key) or _suggestions(key, index, local)
    if suggestions:
        raise TimezoneNearMiss(value=value, suggestions=suggestions[:SUGGESTIONS])
    raise UnknownTimezone(value=value)


def parse_send_time(text: str) -> time:
    """A local send time ``HH:MM`` between 07:00 and 21:00."""
    value = text.strip()
    match = _TIME.fullmatch(value)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        raise InvalidSendTime(value=value)
    at = time(int(match[1]), int(match[2]))
    if not EARLIEST_SEND_TIME <= at <= LATEST_SEND_TIME:
        raise SendTimeOutOfRange(
            value=at.strftime("%H:%M"),
            earliest=EARLIEST_SEND_TIME.strftime("%H:%M"),
            latest=LATEST_SEND_TIME.strftime("%H:%M"),
        )
    return at


def check_prophylaxis_days(days: int) -> int:
    """Anti-herpes prophylaxis after each course: at least 30 days, the coordinator may add."""
    if not DEFAULT_PROPHYLAXIS_DAYS <= days <= MAX_PROPHYLAXIS_DAYS:
        raise InvalidProphylaxisDays(
            value=days, minimum=DEFAULT_PROPHYLAXIS_DAYS, maximum=MAX_PROPHYLAXIS_DAYS
        )
    return days


def check_locale(code: str, available: Collection[str]) -> str:
    """One of the locales the bot ships."""
    value = code.strip()
    if value not in available:
        raise UnsupportedLocale(value=value, choices=", ".join(sorted(available)))
    return value


def build_profile(
    *,
    courses: Sequence[CourseSpec],
    timezone: str,
    send_time: str | None = None,
    cbp: bool = False,
    prophylaxis_days: int = DEFAULT_PROPHYLAXIS_DAYS,
    allow_early_course: bool = False,
) -> tuple[Profile, list[ValidationWarning]]:
    """A planner profile from enrolment answers, every rule checked before anything is built."""
    checked, warnings = build_courses(courses, allow_early=allow_early_course)
    profile = Profile(
        courses=checked,
        timezone=parse_timezone(timezone),
        send_time=DEFAULT_SEND_TIME if send_time is None else parse_send_time(send_time),
        cbp=cbp,
        prophylaxis_days=check_prophylaxis_days(prophylaxis_days),
    )
    return profile, warnings

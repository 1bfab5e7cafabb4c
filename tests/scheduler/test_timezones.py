"""The time-zone parser: IANA ids in any case, cities, old names and aliases, suggestions."""

from __future__ import annotations

from datetime import date

import pytest

from scheduler.errors import TimezoneNearMiss, UnknownTimezone
from scheduler.validation import (
    MAX_TIMEZONE_TEXT,
    TIMEZONE_ALIASES,
    build_profile,
    parse_timezone,
    place_timezones,
)


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        ("Europe/Berlin", "Europe/Berlin"),
        ("europe/berlin", "Europe/Berlin"),
        ("EUROPE/BERLIN", "Europe/Berlin"),
        (" pacific/kiritimati ", "Pacific/Kiritimati"),
        ("america/new york", "America/New_York"),
        ("America / New_York", "America/New_York"),
        ("berlin", "Europe/Berlin"),
        ("Berlin", "Europe/Berlin"),
        ("new york", "America/New_York"),
        ("New_York", "America/New_York"),
        ("sao paulo", "America/Sao_Paulo"),
        ("São Paulo", "America/Sao_Paulo"),
        ("zürich", "Europe/Zurich"),
        ("buenos aires", "America/Argentina/Buenos_Aires"),
        ("port au prince", "America/Port-au-Prince"),
        ("St. John's", "America/St_Johns"),
        ("dar es salaam", "Africa/Dar_es_Salaam"),
        ("Asia/Kolkata", "Asia/Kolkata"),
        ("UTC", "UTC"),
        ("utc", "UTC"),
        ("Etc/GMT-3", "Etc/GMT-3"),
        ("CET", "CET"),
    ],
)
def test_ids_and_cities_in_any_case(text: str, zone: str) -> None:
    assert parse_timezone(text).key == zone


@pytest.mark.parametrize(
    ("text", "zone"),
    [
        # Old ids and the cities in them, under the current id tz links them to.
        ("kiev", "Europe/Kyiv"),
        ("kyiv", "Europe/Kyiv"),
        ("Europe/Kiev", "Europe/Kyiv"),
        ("calcutta", "Asia/Kolkata"),
        ("Asia/Calcutta", "Asia/Kolkata"),
        ("saigon", "Asia/Ho_Chi_Minh"),
        ("US/Eastern", "America/New_York"),
        ("japan", "Asia/Tokyo"),
        # Common names that no id has.
        ("bombay", "Asia/Kolkata"),
        ("Mumbai", "Asia/Kolkata"),
        ("beijing", "Asia/Shanghai"),
        ("München", "Europe/Berlin"),
        ("wien", "Europe/Vienna"),
        # tz links Iceland to Africa/Abidjan and Pacific/Samoa is American Samoa.
        ("iceland", "Atlantic/Reykjavik"),
        ("samoa", "Pacific/Apia"),
    ],
)
def test_old_names_and_aliases_give_the_current_id(text: str, zone: str) -> None:
    assert parse_timezone(text).key == zone


def test_a_country_still_using_a_linked_id_keeps_it() -> None:
    # tz links Europe/Amsterdam to Europe/Brussels (the same clock since 1970), but the
    # Netherlands use the name: a patient there reads Amsterdam.
    assert parse_timezone("amsterdam").key == "Europe/Amsterdam"


def test_every_alias_names_a_place() -> None:
    assert set(TIMEZONE_ALIASES.values()) <= place_timezones()


def test_names_in_the_readers_language() -> None:
    names = {"Москва": "Europe/Moscow", "القاهرة": "Africa/Cairo", "Mars": "Mars/Base"}
    assert parse_timezone("москва", names=names).key == "Europe/Moscow"
    assert parse_timezone("القاهرة", names=names).key == "Africa/Cairo"
    # The built-in names come first; a name for an unknown zone is ignored.
    assert parse_timezone("berlin", names={"Berlin": "Europe/Moscow"}).key == "Europe/Berlin"
    with pytest.raises(UnknownTimezone):
        parse_timezone("Mars", names=names)


@pytest.mark.parametrize(
    ("text", "suggestions"),
    [
        ("berlni", ("Europe/Berlin",)),
        ("moskow", ("Europe/Moscow",)),
        ("new yrok", ("America/New_York",)),
        ("sao paolo", ("America/Sao_Paulo",)),
        ("europe/berln", ("Europe/Berlin",)),
        ("eurpoe/berlin", ("Europe/Berlin",)),
        ("kairo", ("Europe/Kirov", "Africa/Cairo")),
    ],
)
def test_a_near_miss_suggests_up_to_three_zones(text: str, suggestions: tuple[str]) -> None:
    with pytest.raises(TimezoneNearMiss) as raised:
        parse_timezone(text)
    assert raised.value.suggestions == suggestions
    assert isinstance(raised.value, UnknownTimezone)
    listed = ", ".join(suggestions)
    assert str(raised.value) == f"{text} is not a known time zone. Did you mean {listed}?"


def test_suggestions_in_the_readers_language() -> None:
    names = {"Москва": "Europe/Moscow", "Маскат": "Asia/Muscat", "Берлин": "Europe/Berlin"}
    with pytest.raises(TimezoneNearMiss) as raised:
        parse_timezone("Моска", names=names)
    assert raised.value.suggestions == ("Europe/Moscow",)


@pytest.mark.parametrize("text", ["sant", "port", "kai", "europe/l", "new", "nw york"])
def test_suggestions_are_at_most_three_places(text: str) -> None:
    with pytest.raises(UnknownTimezone) as raised:
        parse_timezone(text)
    assert len(raised.value.suggestions) <= 3
    assert set(raised.value.suggestions) <= place_timezones()


def test_a_listed_rendering_replaces_the_ids() -> None:
    error = TimezoneNearMiss(value="berlni", suggestions=["Europe/Berlin"], listed="Берлин")
    assert error.render(lambda message: message) == (
        "berlni is not a known time zone. Did you mean Берлин?"
    )
    assert error.suggestions == ("Europe/Berlin",)


@pytest.mark.parametrize(
    "text",
    [
        "Mars/Olympus_Mons",
        "xyz",
        "springfield",
        # An offset has no summer time, and Etc/GMT+3 is UTC-3: no guesses.
        "UTC+3",
        "gmt+3",
        "Factory",
        "localtime",
        "victoria",
        "../etc/passwd",
        "<b>berlin</b>",
        "berlin; drop table",
        "🕐",
    ],
)
def test_far_or_strange_input_gets_no_suggestion(text: str) -> None:
    with pytest.raises(UnknownTimezone) as raised:
        parse_timezone(text)
    assert not isinstance(raised.value, TimezoneNearMiss)


def test_huge_input_is_refused_at_once_and_quoted_short() -> None:
    with pytest.raises(UnknownTimezone) as raised:
        parse_timezone("berlin" * 10_000)
    assert type(raised.value) is UnknownTimezone
    value = str(raised.value.params["value"])
    assert len(value) == MAX_TIMEZONE_TEXT + 1
    assert value.endswith("…")


def test_the_enrolment_profile_takes_a_city() -> None:
    profile, _ = build_profile(courses=[(date(2026, 1, 5), None)], timezone="new york")
    assert profile.timezone.key == "America/New_York"

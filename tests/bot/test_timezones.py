"""Zone names from CLDR (Babel) in every shipped language, and the zones offered first."""

from __future__ import annotations

import pytest

from bot import timezones
from bot.handlers import coordinator
from bot.handlers.patient import COMMON_TIMEZONES
from bot.i18n import SHIPPED_LOCALES, translator
from scheduler.errors import TimezoneNearMiss, UnknownTimezone
from scheduler.validation import place_timezones

FSI, PDI = "\u2068", "\u2069"


@pytest.mark.parametrize(
    ("locale", "names"),
    [
        ("en", ["Moscow", "Kyiv", "Tehran", "Riyadh", "Cairo", "São Paulo"]),
        ("de", ["Moskau", "Kiew", "Teheran", "Riad", "Kairo", "São Paulo"]),
        ("ru", ["Москва", "Киев", "Тегеран", "Эр-Рияд", "Каир", "Сан-Паулу"]),
        ("uk", ["Москва", "Київ", "Тегеран", "Ер-Ріяд", "Каїр", "Сан-Паулу"]),
        ("fa", ["مسکو", "کیف", "تهران", "ریاض", "قاهره", "سائوپائولو"]),
        ("ar", ["موسكو", "كييف", "طهران", "الرياض", "القاهرة", "ساو باولو"]),
    ],
)
def test_cities_in_the_readers_language(locale: str, names: list[str]) -> None:
    zones = [
        "Europe/Moscow",
        "Europe/Kyiv",
        "Asia/Tehran",
        "Asia/Riyadh",
        "Africa/Cairo",
        "America/Sao_Paulo",
    ]
    assert [timezones.city(zone, locale) for zone in zones] == names


def test_ids_that_name_no_place_stay_as_they_are() -> None:
    # CLDR would call Etc/GMT-3 "GMT-3", though it is three hours ahead of UTC.
    assert [timezones.city(zone, "ru") for zone in ["UTC", "Etc/GMT-3"]] == ["UTC", "Etc/GMT-3"]


@pytest.mark.parametrize(
    ("zone", "locale", "shown"),
    [
        ("Europe/Berlin", "en", "Germany (Berlin)"),
        ("America/Argentina/San_Juan", "es", "Argentina (San Juan)"),
        ("Europe/Moscow", "ru", "Россия (Москва)"),
        ("Europe/Kyiv", "uk", "Україна (Київ)"),
        ("Asia/Tehran", "fa", "ایران (تهران)"),
        ("Africa/Cairo", "ar", "مصر (القاهرة)"),
        ("Asia/Kuwait", "ar", "الكويت"),  # the city is the country
        ("UTC", "ar", "UTC"),
    ],
)
def test_patients_read_the_country_with_the_city(zone: str, locale: str, shown: str) -> None:
    assert timezones.place(zone, locale) == shown


def test_coordinators_see_the_id_isolated_in_right_to_left_text() -> None:
    assert timezones.with_id("Europe/Berlin", "de") == "Berlin (Europe/Berlin)"
    assert timezones.with_id("Europe/Berlin", "ru") == "Берлин (Europe/Berlin)"
    assert timezones.with_id("Europe/Berlin", "ar") == f"برلين ({FSI}Europe/Berlin{PDI})"
    assert timezones.with_id("UTC", "en") == "UTC"


@pytest.mark.parametrize("locale", sorted(SHIPPED_LOCALES))
def test_every_offered_zone_reads_back_from_its_button(locale: str) -> None:
    zones = timezones.offered(locale, COMMON_TIMEZONES)
    assert zones[: len(timezones.region_zones(locale))] == list(timezones.region_zones(locale))
    assert timezones.region_zones(locale), "every shipped language has zones of its own"
    assert set(zones) <= place_timezones()
    labels = [timezones.city(zone, locale) for zone in zones]
    assert len(set(labels)) == len(labels)
    # A reply-keyboard press sends the label: it must give back the zone.
    assert [timezones.parse(label, locale).key for label in labels] == zones
    assert set(coordinator.COMMON_TIMEZONES) <= place_timezones()


def test_region_of_a_regional_locale() -> None:
    assert timezones.region_zones("de_AT") == timezones.region_zones("de")
    assert timezones.region_zones("pt-BR")[0] == "America/Sao_Paulo"
    assert timezones.region_zones("xx") == ()
    assert timezones.offered("de", ["Europe/Berlin", "Europe/Paris"], regional=2) == [
        "Europe/Berlin",
        "Europe/Vienna",
        "Europe/Paris",
    ]


@pytest.mark.parametrize(
    ("locale", "typed", "zone"),
    [
        ("ru", "москва", "Europe/Moscow"),
        ("ru", "Киев", "Europe/Kyiv"),
        ("uk", "Київ", "Europe/Kyiv"),
        ("ru", "kiev", "Europe/Kyiv"),
        ("ar", "القاهرة", "Africa/Cairo"),
        ("fa", "تهران", "Asia/Tehran"),
        # Arabic letters typed for Persian ones: the same name.
        ("fa", "تهران".replace("ی", "ي"), "Asia/Tehran"),
        ("fa", "کابل".replace("ک", "ك"), "Asia/Kabul"),
        ("de", "Wien", "Europe/Vienna"),
        ("de", "Kiew", "Europe/Kyiv"),
        ("pt_BR", "sao paulo", "America/Sao_Paulo"),
    ],
)
def test_names_typed_in_the_patients_language(locale: str, typed: str, zone: str) -> None:
    assert timezones.parse(typed, locale).key == zone


def test_a_near_miss_lists_the_cities_as_the_reader_reads_them() -> None:
    with pytest.raises(TimezoneNearMiss) as raised:
        timezones.parse("Берлн", "ru")
    assert raised.value.suggestions == ("Europe/Berlin", "America/Belem")
    tr = translator("ru")
    assert raised.value.render(tr.gettext) == tr.gettext(TimezoneNearMiss.template) % {
        "value": "Берлн",
        "suggestions": "Берлин или Белен",
    }
    with pytest.raises(TimezoneNearMiss) as raised:
        timezones.parse("berlni", "en", ids=True)
    assert str(raised.value) == (
        "berlni is not a known time zone. Did you mean Berlin (Europe/Berlin)?"
    )


def test_right_to_left_messages_isolate_what_was_typed() -> None:
    with pytest.raises(TimezoneNearMiss) as raised:
        timezones.parse("berlni", "ar")
    assert raised.value.params == {"value": f"{FSI}berlni{PDI}", "suggestions": "برلين"}
    with pytest.raises(UnknownTimezone) as unknown:
        timezones.parse("Mars/Base", "fa")
    assert unknown.value.params == {"value": f"{FSI}Mars/Base{PDI}"}

"""Errors and warnings for bad input, one type per rule.

Each carries an English template (extracted into the catalogs with ``N_``) and its
parameters, so the edge can show it in the reader's language with ``render(gettext)``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar


def N_(message: str) -> str:
    """Mark ``message`` for extraction; it is translated later, where it is shown."""
    return message


class _Message:
    template: ClassVar[str]

    def __init__(self, **params: object) -> None:
        self.params = params

    def render(self, gettext: Callable[[str], str]) -> str:
        """The message in the language of ``gettext``."""
        return gettext(self.template) % self.params


class ValidationError(_Message, ValueError):
    """Input that the protocol does not allow; nothing was changed."""

    def __init__(self, **params: object) -> None:
        _Message.__init__(self, **params)
        ValueError.__init__(self, self.template % params)


class ValidationWarning(_Message):
    """Input that is allowed but unusual enough to tell the coordinator."""

    def __str__(self) -> str:
        return self.template % self.params


class InvalidDate(ValidationError):
    # TRANSLATORS: shown to coordinators; %(value)s is what they typed.
    template = N_("%(value)s is not a valid date. Use YYYY-MM-DD, for example 2026-01-05.")


class NoCourses(ValidationError):
    template = N_("Record at least the first treatment course.")


class InvalidCourseDays(ValidationError):
    # TRANSLATORS: shown to coordinators; %(value)s is what they typed.
    template = N_(
        "Course %(number)d: %(value)s is not a number of infusion days. "
        "A course has 1 to 5 infusion days."
    )


class CoursesOutOfOrder(ValidationError):
    template = N_(
        "Course %(number)d starts %(start)s, before course %(previous)d ends "
        "(%(previous_end)s). Enter the courses in date order."
    )


class CourseTooEarly(ValidationError):
    # TRANSLATORS: %(earliest)s is 12 months minus 30 days after the previous course began:
    # the first day the labels' schedule allows without an override.
    template = N_(
        "Course %(number)d starts %(start)s, before %(earliest)s: earlier than 12 months "
        "minus 30 days after course %(previous)d (%(previous_start)s). Confirm the override "
        "if this is intended."
    )


class UnknownTimezone(ValidationError):
    # TRANSLATORS: keep "Europe/Berlin" as it is: it is a technical name.
    template = N_("%(value)s is not a known time zone. Use a name such as Europe/Berlin.")
    # The IANA ids of the zones that were probably meant, best first.
    suggestions: tuple[str, ...] = ()


class TimezoneNearMiss(UnknownTimezone):
    # TRANSLATORS: %(value)s is what was typed; %(suggestions)s lists one to three time
    # zones, e.g. "Berlin, Bern or Beirut".
    template = N_("%(value)s is not a known time zone. Did you mean %(suggestions)s?")

    def __init__(self, *, value: str, suggestions: Sequence[str], listed: str = "") -> None:
        """``listed`` is how the reader sees ``suggestions`` (their ids by default)."""
        self.suggestions = tuple(suggestions)
        super().__init__(value=value, suggestions=listed or ", ".join(self.suggestions))


class InvalidSendTime(ValidationError):
    template = N_("%(value)s is not a time of day. Use HH:MM, for example 09:00.")


class SendTimeOutOfRange(ValidationError):
    template = N_("The send time %(value)s is outside %(earliest)s–%(latest)s.")


class UnsupportedLocale(ValidationError):
    template = N_("%(value)s is not an available language. Choose one of: %(choices)s.")


class InvalidProphylaxisDays(ValidationError):
    template = N_(
        "%(value)s is not allowed for anti-herpes prophylaxis. "
        "Use a number of days from %(minimum)d to %(maximum)d."
    )


class TooManyCourses(ValidationWarning):
    template = N_(
        "Course %(number)d: more than %(limit)d courses is beyond the EU label. "
        "Check with the prescribing neurologist."
    )

"""Short titles of the reminder kinds, as shown in plan tables, calendars and the delivery log.

The full patient messages are clinical content kept with the catalogs; these are labels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from scheduler.errors import N_
from scheduler.protocol import Kind

if TYPE_CHECKING:
    from scheduler.teams import TeamSummary

KIND_TITLES: Final[dict[Kind, str]] = {
    # TRANSLATORS: reminder title, also the calendar event name a patient sees.
    Kind.COURSE_UPCOMING: N_("Treatment course coming up"),
    # TRANSLATORS: reminder title; the message lists emergency warning signs.
    Kind.POST_INFUSION_WARNING: N_("After your infusion: warning signs"),
    # TRANSLATORS: reminder title; "anti-herpes medicine" as prescribed by the team.
    Kind.ANTIVIRAL_PROPHYLAXIS: N_("Anti-herpes medicine"),
    # TRANSLATORS: reminder title for the monthly blood count and urine test.
    Kind.LABS_MONTHLY: N_("Monthly blood and urine tests"),
    # TRANSLATORS: reminder title for the TSH blood test every 3 months.
    Kind.THYROID_QUARTERLY: N_("Thyroid blood test"),
    # TRANSLATORS: reminder title.
    Kind.CONTRACEPTION: N_("Contraception"),
    # TRANSLATORS: reminder title; the 4-month contraception period after a course ends.
    Kind.CONTRACEPTION_END: N_("End of the contraception period"),
    # TRANSLATORS: reminder title; the team will contact the patient about the next course.
    Kind.COURSE_DUE: N_("Next treatment course due"),
    # TRANSLATORS: reminder title for the yearly skin check (and cervical screening).
    Kind.ANNUAL_SCREENING: N_("Yearly screening"),
    # TRANSLATORS: reminder title; the 48-month monitoring period ends.
    Kind.MONITORING_END: N_("End of the monitoring period"),
}


# What "/team assign|remove" and "remindbot team assign [--remove]" answer:
# (removing, changed) -> text with %(user)d and %(team)s.
MEMBERSHIP: Final[dict[tuple[bool, bool], str]] = {
    (False, True): N_("User %(user)d is now in team %(team)s."),
    (False, False): N_("User %(user)d is already in team %(team)s."),
    (True, True): N_("User %(user)d is no longer in team %(team)s."),
    (True, False): N_("User %(user)d is not in team %(team)s."),
}


def team_line(team: TeamSummary, ngettext: Callable[[str, str, int], str]) -> str:
    """One care team as ``/team`` and ``remindbot team list`` show it."""
    # TRANSLATORS: one care team: its name, patient count, and the Telegram user ids of its
    # coordinators and staff.
    return ngettext(
        "%(team)s: %(count)d patient; coordinators: %(coordinators)s; staff: %(staff)s",
        "%(team)s: %(count)d patients; coordinators: %(coordinators)s; staff: %(staff)s",
        team.patients,
    ) % {
        "team": team.name,
        "count": team.patients,
        "coordinators": ", ".join(map(str, team.coordinators)) or "-",
        "staff": ", ".join(map(str, team.staff)) or "-",
    }

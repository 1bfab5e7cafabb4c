"""Care coordinators: enrolment, courses, patients, invites."""

from __future__ import annotations

from bot.handlers.common import Handlers


def handlers() -> Handlers:
    """The coordinator commands and buttons."""
    return []

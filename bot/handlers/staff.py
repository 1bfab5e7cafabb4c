"""Staff and admins: the delivery log and staff roles."""

from __future__ import annotations

from bot.handlers.common import Handlers


def handlers() -> Handlers:
    """The staff commands and buttons."""
    return []

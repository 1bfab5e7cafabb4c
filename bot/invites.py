"""Invite links and their QR codes."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import segno


def invite_link(bot_username: str, token: str) -> str:
    """The deep link that opens the bot and sends ``/start <token>``."""
    return f"https://t.me/{bot_username}?start={token}"


def qr_png(link: str) -> bytes:
    """A PNG QR code of ``link``, large enough to scan from a printed page or a screen."""
    buffer = BytesIO()
    segno.make(link, error="m").save(buffer, kind="png", scale=8, border=4)
    return buffer.getvalue()


def write_qr(link: str, path: Path) -> None:
    path.write_bytes(qr_png(link))

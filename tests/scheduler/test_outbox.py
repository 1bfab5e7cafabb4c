"""The outbox is the one writer of reminder and alert statuses and their history."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OWNERS = {ROOT / "scheduler" / "outbox.py", ROOT / "scheduler" / "models.py"}
WRITES = [
    re.compile(pattern)
    for pattern in (
        r"\b(update|insert|delete)\((Reminder|CoordinatorAlert|DeliveryEvent|AlertEvent)\b",
        r"\binsert\(_(REMINDERS|EVENTS)\b",
        r"\b(DeliveryEvent|AlertEvent|CoordinatorAlert)\(",
        r"\.status\s*=\s*(ReminderStatus|AlertStatus)\.",
        r"\bstatus\s*=\s*(ReminderStatus|AlertStatus)\.",
        r"[\"']status[\"']\s*:\s*(ReminderStatus|AlertStatus)\.",
    )
]


def sources() -> list[Path]:
    files = sorted((ROOT / "bot").rglob("*.py")) + sorted((ROOT / "scheduler").rglob("*.py"))
    return [f for f in files if f not in OWNERS and "migrations" not in f.parts]


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_but_the_outbox_writes_a_status_or_its_history(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    found = [
        f"{path.name}:{text[: match.start()].count(chr(10)) + 1}: {match.group(0)}"
        for pattern in WRITES
        for match in pattern.finditer(text)
    ]
    assert found == [], "go through scheduler.outbox"


def test_the_check_finds_a_write() -> None:
    """The patterns above do catch what they are for."""
    sample = (
        "await session.execute(update(Reminder).values(ready_at=None))\n"
        "reminder.status = ReminderStatus.SENT\n"
        'rows.append({"status": AlertStatus.QUEUED})\n'
        "session.add(DeliveryEvent(reminder_id=1))\n"
    )
    for line in sample.splitlines():
        assert any(pattern.search(line) for pattern in WRITES), line

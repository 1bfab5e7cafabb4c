"""When Telegram or the database goes away and comes back: nothing is lost, and the log has
one warning per failure, no traceback, no "unhandled" error and no "Future exception was
never retrieved"."""

from __future__ import annotations

import gc
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import OperationalError

from scheduler import outbox
from tests.bot.conftest import Harness
from tests.bot.test_dispatch import ANNA, BEN, COORDINATOR, START, history
from tests.fake_bot_api import Fault

DUE = datetime(2025, 12, 29, 8, tzinfo=UTC)  # both patients' first reminder


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    gc.collect()  # a future that held an exception nobody read is reported now
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_bot_api_away_and_back(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    harness.clock.current = START
    await harness.consented(ANNA, coordinator_id=COORDINATOR.id)
    await harness.consented(BEN, "MS-002", coordinator_id=COORDINATOR.id)
    harness.clock.current = DUE
    harness.api.inject("sendMessage", Fault.server_error())  # every send fails
    with caplog.at_level(logging.WARNING):
        report = await harness.tick()
        assert report.retrying == 2
        harness.api.clear_faults()
        harness.clock.advance(timedelta(seconds=30))
        report = await harness.tick()
    assert report.sent == 2
    assert errors(caplog) == []
    assert [e[0] for e in await history(harness, "course_upcoming", "c1-7d")] == [
        "retrying",
        "sent",
    ]


async def test_the_database_away_during_a_tick_then_back(
    harness: Harness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.clock.current = START
    await harness.consented(ANNA, coordinator_id=COORDINATOR.id)
    await harness.consented(BEN, "MS-002", coordinator_id=COORDINATOR.id)
    harness.clock.current = DUE
    checked = outbox.still_ours

    async def gone(*args: object, **kwargs: object) -> set[int]:
        raise OperationalError("SELECT", {}, ConnectionRefusedError("server closed"))

    monkeypatch.setattr(outbox, "still_ours", gone)
    with caplog.at_level(logging.WARNING):
        report = await harness.tick()
        # Nothing was sent, and what was claimed went back to the queue at once.
        assert (report.claimed, report.sent, report.released) == (2, 0, 2)
        monkeypatch.setattr(outbox, "still_ours", checked)
        harness.clock.advance(timedelta(seconds=5))
        report = await harness.tick()
    assert report.sent == 2
    assert "the database could not be reached before a send (OperationalError)" in caplog.text
    assert errors(caplog) == []
    assert "Future exception was never retrieved" not in caplog.text

"""The retry ladder (``policies.decide``), with literal outcomes and times."""

from datetime import UTC, datetime, timedelta

import pytest

from scheduler.policies import ALERT_BUDGET, REMINDER_BUDGET, Decision, RetryBudget, Verdict, decide
from scheduler.sending import Outcome, Result

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
S = timedelta(seconds=1)


def limited(seconds: int) -> Outcome:
    return Outcome(
        Result.RATE_LIMITED,
        error_code=429,
        description="Too Many Requests",
        retry_after=timedelta(seconds=seconds),
    )


@pytest.mark.parametrize(
    ("outcome", "attempts", "decision"),
    [
        (Outcome.sent(7), 1, Decision(Verdict.SENT)),
        (
            Outcome(Result.BLOCKED, 403, description="blocked"),
            1,
            Decision(Verdict.FAIL, None, "blocked"),
        ),
        (
            Outcome(Result.REJECTED, 400, description="chat not found"),
            3,
            Decision(Verdict.FAIL, None, "chat not found"),
        ),
        # 5xx and network errors: 30 s, 1 min, 2 min, … at most an hour.
        (
            Outcome(Result.TRANSIENT, 502, description="Bad Gateway"),
            1,
            Decision(Verdict.RETRY, NOW + 30 * S, "Bad Gateway"),
        ),
        (
            Outcome(Result.TRANSIENT, 502, description="Bad Gateway"),
            2,
            Decision(Verdict.RETRY, NOW + 60 * S, "Bad Gateway"),
        ),
        (
            Outcome(Result.TRANSIENT, 502, description="Bad Gateway"),
            7,
            Decision(Verdict.RETRY, NOW + 1920 * S, "Bad Gateway"),
        ),
        (
            Outcome(Result.TRANSIENT, 502, description="Bad Gateway"),
            8,
            Decision(Verdict.FAIL, None, "gave up after 8 attempts: Bad Gateway"),
        ),
        # A timeout waits until Telegram would surely have answered, and says so.
        (
            Outcome(Result.TIMED_OUT, description="no answer in time"),
            1,
            Decision(
                Verdict.RETRY,
                NOW + 120 * S,
                "timed out, the message may have arrived: no answer in time",
            ),
        ),
        (
            Outcome(Result.TIMED_OUT, description="no answer in time"),
            4,
            Decision(
                Verdict.RETRY,
                NOW + 240 * S,
                "timed out, the message may have arrived: no answer in time",
            ),
        ),
        # 429: Telegram's wait first; a chat that keeps refusing waits longer and longer.
        (limited(5), 1, Decision(Verdict.RETRY, NOW + 5 * S, "Too Many Requests")),
        (limited(5), 2, Decision(Verdict.RETRY, NOW + 30 * S, "Too Many Requests")),
        (limited(90), 2, Decision(Verdict.RETRY, NOW + 90 * S, "Too Many Requests")),
        (
            limited(5),
            8,
            Decision(Verdict.FAIL, None, "gave up after 8 attempts: Too Many Requests"),
        ),
    ],
)
def test_the_reminder_ladder(outcome: Outcome, attempts: int, decision: Decision) -> None:
    assert decide(outcome, attempts=attempts, now=NOW, budget=REMINDER_BUDGET) == decision


def test_alerts_are_tried_longer_and_the_backoff_stops_at_an_hour() -> None:
    down = Outcome(Result.TRANSIENT, description="down")
    assert decide(down, attempts=8, now=NOW, budget=ALERT_BUDGET).verdict is Verdict.RETRY
    assert decide(down, attempts=11, now=NOW, budget=ALERT_BUDGET).retry_at == NOW + timedelta(
        hours=1
    )
    assert decide(down, attempts=12, now=NOW, budget=ALERT_BUDGET).verdict is Verdict.FAIL
    total = sum((ALERT_BUDGET.backoff(n) for n in range(1, 12)), timedelta())
    assert timedelta(hours=4) < total < timedelta(hours=6)  # "about five hours"


def test_a_budget_of_one_gives_up_at_once() -> None:
    assert (
        decide(Outcome(Result.TRANSIENT), attempts=1, now=NOW, budget=RetryBudget(1)).verdict
        is Verdict.FAIL
    )

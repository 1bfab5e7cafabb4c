"""How fast the bot may send: Telegram's limits, kept by one limiter per process.

Telegram allows about 30 messages per second overall, one per second in a private chat and
20 a minute in a group, and answers 429 (with ``retry_after``) to a bot that sends faster;
PTB's AIORateLimiter does not enforce the per-chat limit for private chats.

The overall rate is the bot's, not a process's: replicas sharing one token each send their
share of it (``RateLimiter.set_share``, kept up to date by ``Dispatcher.beat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

# 429s from this many chats within this many seconds: a flood wait for the whole bot.
FLOOD_CHATS = 3
FLOOD_WINDOW = 2.0
# The margin below a share of the rate when several processes share it (see set_share).
SHARED_MARGIN = 0.95
# Sending time lost to a pause (the process held up, the dispatcher between two batches)
# is made up for, up to this many seconds of it: the sends go at once, as many as the
# window allows (see ``sending``).
CATCH_UP = 0.5


@dataclass
class _Started:
    """A send that started: it counts against the window until ``until``."""

    until: float


class RateLimiter:
    """Spaces sends: at most ``per_second`` overall (or this process's ``share`` of it),
    one per ``chat_interval`` per private chat and one per ``group_interval`` per group.

    Telegram allows about 30 messages per second overall, one per second in a private chat
    and 20 a minute in a group; PTB's AIORateLimiter does not enforce the second for private
    chats.
    """

    def __init__(
        self,
        *,
        per_second: float | None,
        chat_interval: float | None = 1.0,
        group_interval: float | None = 3.0,
        margin: float = 0.97,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        # The configured rate, the bot's; this process sends ``share`` of it.
        self.per_second = per_second
        self.processes = 1
        self._margin = margin
        self._chat_spacing = chat_interval / margin if chat_interval else 0.0
        # Groups (negative chat ids: the alert chat) get about 20 messages a minute.
        self._group_spacing = group_interval / margin if group_interval else 0.0
        self.set_share(1)
        self._started: list[_Started] = []
        self._monotonic = monotonic
        self._sleep = sleep
        self._next_slot = 0.0
        self._paused_until = 0.0
        self._chat_free: dict[int, float] = {}
        self._chat_locks: dict[int, asyncio.Lock] = {}
        # (when, chat) of recent 429s: several chats at once means a bot-wide flood wait.
        self._throttled: deque[tuple[float, int]] = deque()

    @property
    def share(self) -> float | None:
        """What this process may send per second: its share of ``per_second``."""
        return self.per_second / self.processes if self.per_second else None

    def set_share(self, processes: int) -> None:
        """From now on send ``per_second / processes``: ``processes`` replicas share the
        bot's rate.

        The margin widens to ``SHARED_MARGIN`` when they are several: the sends of each
        reach Telegram with latencies of their own, and one replica's sends bunched by a
        few tens of milliseconds would otherwise tip a second that the others fill. The
        window of ``hold`` follows the share: at most ``share`` (rounded down, at least one)
        sends start within the time they take at ``share * margin``, and never within less
        than a second, so that the replicas' windows add up to no more than the bot's rate
        in any second, however their sends fall.
        """
        self.processes = max(1, processes)
        rate = self.share
        margin = self._margin if self.processes == 1 else min(self._margin, SHARED_MARGIN)
        self._spacing = 1 / (rate * margin) if rate else 0.0
        # At most ``_window_limit`` sends start within ``_window`` seconds (see ``hold``);
        # each entry of ``_started`` is when a send leaves that window.
        self._window_limit = max(1, math.floor(rate)) if rate else 0
        self._window = max(1.0, self._window_limit / (rate * margin)) if rate else 0.0
        # For a send whose answer is known (``sending``), exactly the time the share takes.
        self._answered_window = max(1.0, self._window_limit / rate) if rate else 0.0

    def pause(self, seconds: float) -> None:
        """Start no send for ``seconds`` from now: slots taken already wait too (in
        ``hold``)."""
        self._paused_until = max(self._paused_until, self._monotonic() + seconds)
        self._next_slot = max(self._next_slot, self._paused_until)

    async def acquire(self, chat_id: int) -> float:
        """Wait until a message to ``chat_id`` may go out, and take that slot (returned, in
        monotonic seconds; up to ``CATCH_UP`` in the past after a pause)."""
        lock = self._chat_locks.get(chat_id)
        if lock is None:
            lock = self._chat_locks[chat_id] = asyncio.Lock()
        async with lock:  # messages to one chat take turns
            now = self._monotonic()
            while (ready := self._chat_free.get(chat_id, 0.0)) > now:
                # Until the chat's previous message is answered (``sending``), then a second.
                await self._sleep(0.005 if ready == math.inf else ready - now)
                now = self._monotonic()
            slot = max(now - CATCH_UP, self._next_slot)
            self._next_slot = slot + self._spacing
            if slot > now:
                await self._sleep(slot - now)
            if spacing := self._chat_spacing_of(chat_id):
                self._chat_free[chat_id] = max(slot, now) + spacing
        if len(self._chat_locks) > 10_000:
            self._forget_idle_chats(now)
        return slot

    async def hold(self, slot: float, delay: float) -> None:
        """Call right before sending. Waits until ``delay`` after ``slot``, so that work done
        between taking a slot and sending (a database check) does not bunch sends together
        when its duration varies; then, should a send still have been held up (a pause of
        the process) so that it would follow the next ones too closely, until fewer than
        ``share`` sends (rounded down, at least one) started within the time they take at
        ``share * margin`` (see ``set_share``); and while the limiter is paused."""
        await self._hold(slot, delay)

    def _chat_spacing_of(self, chat_id: int) -> float:
        return self._group_spacing if chat_id < 0 else self._chat_spacing

    @contextlib.asynccontextmanager
    async def sending(
        self, slot: float, delay: float, chat_id: int | None = None
    ) -> AsyncIterator[None]:
        """``hold``, for a send made inside the block; it counts against the window from
        its start until a window's length after its answer, not after its start.

        Telegram counts a message when the request reaches it, somewhere between the two:
        later than its start by however long the process took to write it (a pause of the
        event loop, a garbage collection) or the network to carry it. Counted until the
        answer, sends held up and sent on time can never fall into one second at Telegram
        more than ``share`` at a time, whatever those delays; the cost is the latency of
        one request per window, a few per cent of the rate. The same holds for the
        message's chat, ``chat_id``: its next message starts a chat interval after this
        one's answer."""
        started = await self._hold(slot, delay)
        spacing = self._chat_spacing_of(chat_id) if chat_id is not None else 0.0
        if started is not None:
            started.until = math.inf  # under way: it may reach Telegram at any moment
        if chat_id is not None and spacing:
            self._chat_free[chat_id] = math.inf
        try:
            yield
        finally:
            answered = self._monotonic()
            if started is not None:
                started.until = answered + self._answered_window
            if chat_id is not None and spacing:
                self._chat_free[chat_id] = answered + spacing

    async def _hold(self, slot: float, delay: float) -> _Started | None:
        wait = max(slot + delay, self._paused_until) - self._monotonic()
        if wait > 0:
            await self._sleep(wait)
        if not self._window_limit:
            return None
        while True:
            now = self._monotonic()
            self._started = [s for s in self._started if s.until > now]
            if len(self._started) < self._window_limit:
                started = _Started(now + self._window)
                self._started.append(started)
                return started
            first = min(s.until for s in self._started)
            # Every one of them under way: one of their answers frees a place.
            await self._sleep(0.005 if first == math.inf else max(first - now, 0.001))

    def throttled(self, chat_id: int, retry_after: float) -> bool:
        """Telegram answered 429 for ``chat_id``: that chat waits ``retry_after`` seconds.

        When chats keep being throttled together (``FLOOD_CHATS`` within ``FLOOD_WINDOW``
        seconds) the wait is the bot's, not one chat's: every send waits, for
        ``retry_after`` and no longer. Returns whether it was taken as bot-wide.
        """
        now = self._monotonic()
        self._chat_free[chat_id] = max(self._chat_free.get(chat_id, 0.0), now + retry_after)
        self._throttled.append((now, chat_id))
        while self._throttled and self._throttled[0][0] < now - FLOOD_WINDOW:
            self._throttled.popleft()
        if len({chat for _, chat in self._throttled}) < FLOOD_CHATS:
            return False
        self._next_slot = max(self._next_slot, now + retry_after)
        return True

    def _forget_idle_chats(self, now: float) -> None:
        self._chat_free = {c: t for c, t in self._chat_free.items() if t > now}
        self._chat_locks = {
            c: lock for c, lock in self._chat_locks.items() if lock.locked() or c in self._chat_free
        }

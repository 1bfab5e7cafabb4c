"""Drain due reminders through the real dispatcher, sender and PTB Bot into the fake Bot API.

    python bench/dispatch_bench.py [--db sqlite|postgresql|both] [--items 100000]
                                   [--batch-size N] [--concurrency N] [--anchor-items N]
    python bench/dispatch_bench.py --limits [--busy] [--seconds 60] [--db ...]

Run from the repository root. Everything is real except Telegram: the Dispatcher (with the
real clock) claims from a migrated database, hands each message to TelegramSender, whose
python-telegram-bot ``Bot`` talks HTTP (through bot/request.py, as the bot does) to the fake
Bot API server (tests/fake_bot_api.py) on 127.0.0.1. Nothing else is contacted.

In the throughput run the server runs in a child process of its own, as Telegram is not in
the bot's process: the figures (reminders/s, CPU per reminder, peak RSS) are the bot's.
``--server-in-process`` puts it in the bot's event loop instead, sharing its core. The limits
run always has the server in process (it reads the server's record of every call).

Throughput run (default): ``--items`` due reminders, each for its own patient and chat (so
one reminder = one message, nothing bundled), all due when the run starts; the server
answers at once, no rate limiter in the dispatcher and none in the server. ``tick()`` is
called until it claims nothing. Prints reminders/s, the due-to-sent latency (the "sent"
DeliveryEvent time minus the later of due_at and the run start: with a backlog this is
mostly queueing), where the wall time went (heartbeat, grouping into messages, alerts; the
rest is claiming, sending and recording), and the process's peak RSS. In the same process
and against the same server, first the anchor: ``--anchor-items`` (default ``--items``)
plain ``Bot.send_message`` calls of the message one monthly-labs reminder makes, as many
at a time as the dispatcher has in flight, with no database and no rendering; then the
CPU time per message of both and their ratio (the target: at most 1.3), each with the
load average.

Limits run (``--limits``): the server enforces 30 messages/s overall and 1/s per chat and
answers beyond that with 429; the Dispatcher has ``RateLimiter(per_second=30)`` (its default
margin). The queue holds 30 x seconds x 1.2 reminders, one per chat, due within the last
hour, plus ``--multi-chats`` chats with ``--per-chat`` reminders each at different instants
(``--chat-gap`` apart, oldest first in the queue), which the per-chat limit has to space
out. Ticks run back to back for ``--seconds``; then the dispatcher is stopped. Prints sends
per second overall and in the steady-state window (after ``--warmup`` s), the fraction of
30/s, the 429s the server returned, and how late each send's request went out, and reached
the server, after the slot the limiter gave it (p50, p99, max). ``--busy`` runs CPU-bound
processes on the other cores (one fewer than there are cores, at least one) for the whole
run: the limiter must hold while the process is held up.

PostgreSQL: ``--postgres-url`` (default $REMINDBOT_TEST_POSTGRES_URL, else a local
``test`` database); the run uses a fresh schema, dropped at the end, whose tables are
ANALYZEd after loading as autovacuum would do in production (``--no-analyze`` to skip).
SQLite: a temporary file, deleted at the end. With ``--db both`` each database runs in its
own child process, so that peak RSS and warm caches do not carry over. Ctrl+C stops cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import functools
import itertools
import math
import multiprocessing
import os
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from datetime import time as clock_time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

# Before telegram is imported: RetryAfter.retry_after as a timedelta, no deprecation warning.
os.environ["PTB_TIMEDELTA"] = "1"

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import func, insert, select, text  # noqa: E402
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker  # noqa: E402
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup  # noqa: E402
from telegram._utils.types import ODVInput  # noqa: E402
from telegram.constants import ParseMode  # noqa: E402
from telegram.request import RequestData  # noqa: E402

from bot import messages  # noqa: E402
from bot.i18n import translator  # noqa: E402
from bot.request import AiohttpRequest  # noqa: E402
from bot.sender import DONE, SNOOZE, SYMPTOMS, TelegramSender, callback_data  # noqa: E402
from scheduler.clock import SystemClock  # noqa: E402
from scheduler.db import create_engine, migrate, session_factory  # noqa: E402
from scheduler.dispatcher import Dispatcher, RateLimiter, TickReport  # noqa: E402
from scheduler.models import DeliveryEvent, Patient, Reminder  # noqa: E402
from scheduler.policies import DEFAULT_LATE_WINDOW  # noqa: E402
from scheduler.protocol import Kind  # noqa: E402
from tests.conftest import team_with_coordinator  # noqa: E402
from tests.fake_bot_api import FakeBotApi  # noqa: E402

TOKEN = "123456:dispatch-bench"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
TELEGRAM_RATE = 30  # messages per second overall; one per second per chat
FIRST_CHAT = 1_000_000
INTERRUPTED = 130  # exit status after Ctrl+C or SIGTERM
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(Dispatcher)}
T = TypeVar("T")


# --- databases ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(kind: str, postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated, empty database: a temporary SQLite file or a fresh PostgreSQL schema."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dispatch_bench_") as tmp:
            engine = create_engine(f"sqlite+aiosqlite:///{Path(tmp) / 'remindbot.db'}")
            try:
                await migrate(engine)
                yield engine
            finally:
                await engine.dispose()
        return
    schema = f"dispatch_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(postgres_url)
    created = False
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        created = True
        engine = create_engine(
            postgres_url, connect_args={"server_settings": {"search_path": schema}}
        )
        try:
            await migrate(engine)
            yield engine
        finally:
            await engine.dispose()
    finally:
        if created:
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await admin.dispose()


async def add_due(
    sessions: async_sessionmaker[AsyncSession],
    chats: Sequence[Sequence[datetime]],
    *,
    created_at: datetime,
) -> int:
    """One active patient per entry of ``chats`` (chat ids from FIRST_CHAT on), with a
    queued monthly-labs reminder due at each of its instants. Returns the reminder count."""
    count = 0
    team_id = await team_with_coordinator(sessions)  # every patient belongs to a team
    async with sessions.begin() as session:
        patients = [
            {
                "team_id": team_id,
                "label": f"B{n}",
                "locale": "en",
                "timezone": "UTC",
                "send_time": clock_time(9),
                "cbp": False,
                "cervix": False,
                "prophylaxis_days": 30,
                "status": "active",
                "chat_id": FIRST_CHAT + n,
                "plan_version": 1,
                "created_at": created_at,
            }
            for n in range(len(chats))
        ]
        for start in range(0, len(patients), 5000):
            await session.execute(insert(Patient), patients[start : start + 5000])
        ids = {
            chat: pid for chat, pid in await session.execute(select(Patient.chat_id, Patient.id))
        }
        rows: list[dict[str, Any]] = []
        for n, instants in enumerate(chats):
            for k, due in enumerate(instants):
                rows.append(
                    {
                        "patient_id": ids[FIRST_CHAT + n],
                        "kind": Kind.LABS_MONTHLY.value,
                        "occurrence": f"m{k}",
                        "local_date": due.date(),
                        "due_at": due,
                        "status": "planned",
                        "plan_version": 1,
                        "ready_at": due,
                        "attempts": 0,
                        "created_at": created_at,
                    }
                )
            if len(rows) >= 5000:
                await session.execute(insert(Reminder), rows)
                count += len(rows)
                rows = []
        if rows:
            await session.execute(insert(Reminder), rows)
            count += len(rows)
    return count


async def analyze(engine: AsyncEngine, kind: str, enabled: bool) -> None:
    """PostgreSQL: give the planner statistics for the freshly loaded tables, as autovacuum
    would in production (a local test server may run with autovacuum off). The app never
    runs ANALYZE on SQLite, so neither does the benchmark."""
    if kind == "postgresql" and enabled:
        async with engine.begin() as connection:
            await connection.execute(text("ANALYZE patient, reminder, delivery_event"))


# --- the real pieces ---------------------------------------------------------------------------


class TimedRequest(AiohttpRequest):
    """bot/request.py's request, noting when each sendMessage request goes out, by chat."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.went_out: dict[Any, list[float]] = {}

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = AiohttpRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = AiohttpRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = AiohttpRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = AiohttpRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if request_data is not None and url.endswith("/sendMessage"):
            chat = request_data.parameters.get("chat_id")
            self.went_out.setdefault(chat, []).append(time.monotonic())
        return await super().do_request(
            url, method, request_data, read_timeout, write_timeout, connect_timeout, pool_timeout
        )


def make_bot(base_url: str, request_class: type[AiohttpRequest] = AiohttpRequest) -> Bot:
    """A PTB Bot on the fake server, with the connection pool and timeouts bot/app.py uses."""
    request = request_class(connect_timeout=10.0, read_timeout=10.0, write_timeout=10.0)
    return Bot(TOKEN, base_url=base_url, request=request)


async def raw_sends(bot: Bot, *, first_chat: int, count: int, concurrency: int) -> None:
    """The anchor: ``count`` calls of PTB's ``Bot.send_message``, ``concurrency`` at a time,
    each to its own chat, of the message the dispatcher sends for one monthly-labs reminder
    (its text and buttons made once: no database, no rendering, nothing but the send)."""
    tr = translator("en")
    text = messages.bundle_html([(Kind.LABS_MONTHLY, None)], cervix=False, tr=tr)
    markup = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton(tr.gettext(label), callback_data=callback_data(1, 0, action))
                for label, action in (
                    (messages.DONE, DONE),
                    (messages.SNOOZE, SNOOZE),
                    (messages.SYMPTOMS, SYMPTOMS),
                )
            ]
        ]
    )
    chats = iter(range(first_chat, first_chat + count))

    async def worker() -> None:
        for chat in chats:
            await bot.send_message(chat, text, reply_markup=markup, parse_mode=ParseMode.HTML)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


@contextlib.asynccontextmanager
async def busy_cores(enabled: bool) -> AsyncIterator[int]:
    """With ``enabled``, CPU-bound processes on the other cores (one fewer than there are
    cores, at least one) while the block runs; yields how many."""
    if not enabled:
        yield 0
        return
    spinners = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", "while True: pass", start_new_session=True
        )
        for _ in range(max(1, (os.cpu_count() or 2) - 1))
    ]
    try:
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.terminate()
        for spinner in spinners:
            await spinner.wait()


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def accepted_sends(server: FakeBotApi) -> tuple[int, int]:
    """sendMessage calls the server answered with 200, and the distinct chats they went to."""
    ok = [call.chat_id for call in sends(server) if call.status == 200]
    return len(ok), len(set(ok))


def serve_in_child(pipe: Connection) -> None:
    """The child process: a fake Bot API server until told to stop; then what it accepted."""

    async def serve() -> None:
        async with FakeBotApi() as server:
            pipe.send(server.base_url)
            await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
            pipe.send(accepted_sends(server))

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    asyncio.run(serve())


@contextlib.asynccontextmanager
async def fake_server(in_process: bool) -> AsyncIterator[tuple[str, Callable[[], tuple[int, int]]]]:
    """The fake Bot API's base URL, and a function that stops it and returns
    ``accepted_sends``."""
    if in_process:
        async with FakeBotApi() as server:
            yield server.base_url, functools.partial(accepted_sends, server)
        return
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    child = context.Process(target=serve_in_child, args=(theirs,), name="fake Bot API")
    child.start()
    loop = asyncio.get_running_loop()
    result: tuple[int, int] | None = None

    def finish() -> tuple[int, int]:
        nonlocal result
        if result is None:
            ours.send("stop")
            result = ours.recv()
        return result

    try:
        if not await loop.run_in_executor(None, ours.poll, 30):
            raise SystemExit("the fake Bot API did not start within 30 s")
        yield ours.recv(), finish
    finally:
        if child.is_alive() and result is None:
            child.terminate()
        await loop.run_in_executor(None, child.join, 10)


class PhaseTimer:
    """Wall time the dispatcher spends in each phase of a tick (wraps the instance's methods;
    sending is what is left of the tick)."""

    PHASES = ("beat", "_messages", "send_alerts")

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.seconds: dict[str, float] = dict.fromkeys(self.PHASES, 0.0)
        for name in self.PHASES:
            method = getattr(dispatcher, name, None)
            if method is not None:
                setattr(dispatcher, name, self._timed(name, method))

    def _timed(self, name: str, method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def timed(*args: Any, **kwargs: Any) -> T:
            started = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - started

        return timed

    def lines(self, total: float) -> list[str]:
        send = total - sum(self.seconds.values())
        parts = [*((n.lstrip("_"), self.seconds[n]) for n in self.PHASES), ("send", send)]
        return [f"  {name:<12} {s:8.2f} s  {100 * s / total:5.1f} %" for name, s in parts]


def add_report(total: TickReport, report: TickReport) -> None:
    for name in ("claimed", "sent", "retrying", "failed", "expired", "released", "deliveries"):
        setattr(total, name, getattr(total, name) + getattr(report, name))
    for key, value in report.by_result.items():
        total.by_result[key] = total.by_result.get(key, 0) + value


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the loop and aiosqlite's
    return usage.ru_utime + usage.ru_stime


def current_rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def dispatcher_settings(args: argparse.Namespace) -> tuple[int, int]:
    return (
        args.batch_size or _DEFAULTS["batch_size"],
        args.concurrency or _DEFAULTS["concurrency"],
    )


def code_version() -> str:
    """The commit the benchmark runs on, and whether the work tree differs from it."""
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if changed else ''}"


def sends(server: FakeBotApi) -> list[Any]:
    return [call for call in server.calls if call.method == "sendMessage"]


# --- throughput --------------------------------------------------------------------------------


async def throughput(args: argparse.Namespace, kind: str) -> bool:
    clock = SystemClock()
    batch_size, concurrency = dispatcher_settings(args)
    print(f"\n=== throughput on {kind}: {args.items:,} due reminders, rate limits off ===")
    where = "this process" if args.server_in_process else "a child process"
    print(
        f"batch_size {batch_size}, concurrency {concurrency}; fake Bot API in {where}; "
        f"code {code_version()}"
    )
    async with (
        database(kind, args.postgres_url) as engine,
        fake_server(args.server_in_process) as (base_url, stop_server),
    ):
        sessions = session_factory(engine)
        seeding = time.perf_counter()
        due = clock.now() - timedelta(seconds=1)
        items = await add_due(sessions, [[due]] * args.items, created_at=due)
        await analyze(engine, kind, args.analyze)
        print(f"seeded:          {items:,} reminders in {time.perf_counter() - seeding:.1f} s")
        rss_before = current_rss_mib()

        async with make_bot(base_url) as bot:
            dispatcher = Dispatcher(
                sessions=sessions,
                sender=TelegramSender(bot, alert_locale="en"),
                clock=clock,
                late_window=DEFAULT_LATE_WINDOW,
                postgres=kind == "postgresql",
                batch_size=batch_size,
                concurrency=concurrency,
                limiter=None,
            )
            in_flight = dispatcher.in_flight()
            anchor_chats = FIRST_CHAT + 2 * max(items, args.anchor_items) + 1
            warm = 2 * in_flight  # connections opened, caches filled: not measured
            await raw_sends(bot, first_chat=anchor_chats, count=warm, concurrency=in_flight)
            anchor_profiler = cProfile.Profile() if args.profile else None
            anchor_started, anchor_cpu_started = time.perf_counter(), cpu_seconds()
            if anchor_profiler:
                anchor_profiler.enable()
            await raw_sends(
                bot,
                first_chat=anchor_chats + warm,
                count=args.anchor_items,
                concurrency=in_flight,
            )
            if anchor_profiler:
                anchor_profiler.disable()
                anchor_profiler.dump_stats(f"{args.profile}.anchor.{kind}")
            anchor_elapsed = time.perf_counter() - anchor_started
            anchor_cpu = cpu_seconds() - anchor_cpu_started
            anchor_load = load_average()
            phases = PhaseTimer(dispatcher)
            total, ticks = TickReport(), 0
            profiler = cProfile.Profile() if args.profile else None
            run_start = clock.now()
            started, cpu_started = time.perf_counter(), cpu_seconds()
            if profiler:
                profiler.enable()
            try:
                while True:
                    report = await dispatcher.tick()
                    ticks += 1
                    add_report(total, report)
                    if not report.claimed and not report.expired:
                        break
            finally:
                if profiler:
                    profiler.disable()
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds() - cpu_started

        rss_peak = peak_rss_mib()
        api_ok, api_chats = stop_server()
        async with sessions() as session:
            statuses = Counter(
                {
                    status: count
                    for status, count in await session.execute(
                        select(Reminder.status, func.count()).group_by(Reminder.status)
                    )
                }
            )
            events = [
                (rid, status, at)
                for rid, status, at in await session.execute(
                    select(DeliveryEvent.reminder_id, DeliveryEvent.status, DeliveryEvent.at)
                )
            ]
            due_at = {
                rid: at for rid, at in await session.execute(select(Reminder.id, Reminder.due_at))
            }

    run_load = load_average()
    sent = {rid: at for rid, status, at in events if status == "sent"}
    due_to_sent = sorted(
        (at - max(due_at[rid], run_start)).total_seconds() for rid, at in sent.items()
    )
    rate = total.sent / elapsed if elapsed else math.nan

    print(f"items:           {items:,}")
    print(
        f"sent:            {total.sent:,} reminders in {total.deliveries:,} messages, "
        f"{ticks} ticks (server accepted {api_ok:,} sendMessage to {api_chats:,} chats)"
    )
    print(f"elapsed:         {elapsed:.2f} s")
    print(f"reminders/s:     {rate:,.0f}  (target >= 1,000)")
    per_reminder = 1000 * cpu / max(total.sent, 1)
    per_raw_send = 1000 * anchor_cpu / max(args.anchor_items, 1)
    print(
        f"CPU:             {cpu:.2f} s in this process ({100 * cpu / elapsed:.0f} % of one "
        f"core), {per_reminder:.2f} ms per reminder; {run_load}"
    )
    print(
        f"anchor:          {args.anchor_items:,} raw Bot.send_message, {in_flight} at a time, "
        f"in {anchor_elapsed:.2f} s: {anchor_cpu:.2f} s CPU, {per_raw_send:.2f} ms per message; "
        f"{anchor_load}"
    )
    print(
        f"CPU ratio:       {per_reminder / per_raw_send:.2f} x a raw send per reminder "
        "(target <= 1.3)"
    )
    print(
        f"due-to-sent:     p50 {percentile(due_to_sent, 50):.2f} s, "
        f"p99 {percentile(due_to_sent, 99):.2f} s, max {percentile(due_to_sent, 100):.2f} s"
        "  (all due at the run start: mostly waiting in the queue)"
    )
    print(
        f"peak RSS:        {rss_peak:,.0f} MiB (process; {rss_before:,.0f} MiB before the run"
        f"{', includes the fake server' if args.server_in_process else ''})"
    )
    print("wall time by dispatcher phase:")
    print("\n".join(phases.lines(elapsed)))
    if profiler:
        profiler.dump_stats(f"{args.profile}.{kind}")
        print(
            f"profile:         {args.profile}.{kind} (the anchor's: {args.profile}.anchor.{kind})"
        )
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    complete = (
        statuses == Counter({"sent": items})
        and api_ok == api_chats == items + warm + args.anchor_items
        and total.sent == items
    )
    print(f"check:           {'ok' if complete else 'FAILED'} (statuses {dict(statuses)})")
    met = complete and rate >= 1000
    print(f"target met:      {'yes' if met else 'NO'}")
    return met


# --- limits ------------------------------------------------------------------------------------


async def limits(args: argparse.Namespace, kind: str) -> bool:
    clock = SystemClock()
    batch_size, concurrency = dispatcher_settings(args)
    singles = math.ceil(TELEGRAM_RATE * args.seconds * 1.2)
    print(f"\n=== rate limits on {kind}: {args.seconds:g} s against 30/s overall, 1/s per chat ===")
    print(
        f"batch_size {batch_size}, concurrency {concurrency}, RateLimiter(per_second=30); "
        f"code {code_version()}"
    )
    async with database(kind, args.postgres_url) as engine, FakeBotApi() as server:
        sessions = session_factory(engine)
        now = clock.now()
        # Singles spread over the last hour; the multi-item chats' reminders are older, so
        # they come first, a few chats' reminders at different instants in the same batch.
        hour = timedelta(hours=1)
        chats: list[list[datetime]] = [[now - hour + hour * n / singles] for n in range(singles)]
        gap = timedelta(seconds=args.chat_gap)
        oldest = now - hour - gap * args.per_chat
        if oldest < now - DEFAULT_LATE_WINDOW:
            raise SystemExit("--chat-gap x --per-chat reaches beyond the 72 h late window")
        chats += [
            [oldest + gap * k + timedelta(seconds=n) for k in range(args.per_chat)]
            for n in range(args.multi_chats)
        ]
        items = await add_due(sessions, chats, created_at=now)
        await analyze(engine, kind, args.analyze)
        print(
            f"queue:           {items:,} reminders: {singles:,} chats with one, "
            f"{args.multi_chats} chats with {args.per_chat} ({args.chat_gap:g} s apart)"
        )
        rate_limit = server.enable_rate_limit(global_per_second=30, per_chat_per_second=1)

        limiter = RateLimiter(per_second=TELEGRAM_RATE)
        slots: dict[Any, list[float]] = {}
        acquire = limiter.acquire

        async def noted(chat_id: int) -> float:
            slot = await acquire(chat_id)
            # When the send may go: its slot, or now for a slot in the past (catching up).
            slots.setdefault(chat_id, []).append(max(slot, time.monotonic()))
            return slot

        limiter.acquire = noted  # type: ignore[method-assign]
        bot = make_bot(server.base_url, TimedRequest)
        async with bot, busy_cores(args.busy) as spinners:
            if spinners:
                print(f"busy:            {spinners} CPU-bound process(es) beside the run")
            dispatcher = Dispatcher(
                sessions=sessions,
                sender=TelegramSender(bot, alert_locale="en"),
                clock=clock,
                late_window=DEFAULT_LATE_WINDOW,
                postgres=kind == "postgresql",
                batch_size=batch_size,
                concurrency=concurrency,
                limiter=limiter,
            )
            phases = PhaseTimer(dispatcher)
            total, ticks = TickReport(), 0
            first_call = len(server.calls)
            stopping = False

            async def run() -> None:
                nonlocal ticks
                while True:
                    report = await dispatcher.tick()
                    ticks += 1
                    add_report(total, report)
                    if stopping:
                        return
                    if not report.claimed and not report.expired:
                        await asyncio.sleep(0.1)  # queue empty before the time is up

            started = time.monotonic()  # the server stamps calls with time.monotonic
            started_perf, cpu_started = time.perf_counter(), cpu_seconds()
            runner = asyncio.create_task(run(), name="dispatch bench ticks")
            try:
                await asyncio.wait({runner}, timeout=args.seconds)
                stopping = True
                dispatcher.stop()  # finish the chunk in flight, release the rest
                await runner
            finally:
                if not runner.done():
                    runner.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await runner
            elapsed = time.perf_counter() - started_perf
            cpu = cpu_seconds() - cpu_started
            run_load = load_average()

        calls = [c for c in server.calls[first_call:] if c.method == "sendMessage"]
        rejected_rate_limit = rate_limit.rejected
        accepted_total = rate_limit.accepted

    end = started + args.seconds
    ok_times = sorted(c.time for c in calls if c.status == 200)
    in_run = [t for t in ok_times if started <= t < end]
    too_many = sum(1 for c in calls if c.status == 429)
    per_second = [0] * math.ceil(args.seconds)
    for t in in_run:
        per_second[int(t - started)] += 1
    steady_from = started + args.warmup
    steady = [t for t in in_run if t >= steady_from]
    steady_seconds = end - steady_from
    overall_rate = len(in_run) / args.seconds
    steady_rate = len(steady) / steady_seconds if steady_seconds > 0 else math.nan
    by_chat: dict[Any, list[float]] = {}
    for c in calls:
        if c.status == 200:
            by_chat.setdefault(c.chat_id, []).append(c.time)
    chat_gaps = [b - a for ts in by_chat.values() for a, b in itertools.pairwise(ts)]
    global_gaps = [b - a for a, b in itertools.pairwise(ok_times)]
    window_max = 0
    lo = 0
    for hi, t in enumerate(ok_times):  # most sends in any 1-second window
        while ok_times[lo] <= t - 1.0:
            lo += 1
        window_max = max(window_max, hi - lo + 1)

    print(
        f"ran:             {elapsed:.1f} s, {ticks} ticks; dispatcher: {total.sent:,} sent, "
        f"{total.retrying} retrying, {total.released} released at the stop, "
        f"results {dict(total.by_result)}"
    )
    print(
        f"sent/s overall:  {overall_rate:.2f}  ({len(in_run):,} in {args.seconds:g} s) = "
        f"{100 * overall_rate / TELEGRAM_RATE:.1f} % of 30/s  (target >= 95 %)"
    )
    print(
        f"sent/s steady:   {steady_rate:.2f}  (from {args.warmup:g} s to the end) = "
        f"{100 * steady_rate / TELEGRAM_RATE:.1f} % of 30/s"
    )
    print(
        f"per second:      min {min(per_second)}, median {statistics.median(per_second):g}, "
        f"max {max(per_second)}; {' '.join(map(str, per_second))}"
    )
    print(f"busiest second:  {window_max} sends in a sliding 1 s window (server allows 30)")
    if global_gaps:
        print(
            f"gap between sends: min {1000 * min(global_gaps):.1f} ms, "
            f"median {1000 * statistics.median(global_gaps):.1f} ms, "
            f"max {1000 * max(global_gaps):.0f} ms"
        )
    if chat_gaps:
        print(f"same-chat gaps:  {len(chat_gaps)}, min {min(chat_gaps):.3f} s")
    print(
        f"CPU:             {cpu:.1f} s in this process ({100 * cpu / elapsed:.0f} % of one core); "
        f"{run_load}"
    )
    # Each chat's slots, in order, against its requests in order: every slot taken is
    # sent, except at the stop (the trailing ones, left out by zip).
    request = bot.request
    went_out = request.went_out if isinstance(request, TimedRequest) else {}
    arrived: dict[Any, list[float]] = {}
    for c in calls:
        arrived.setdefault(c.chat_id, []).append(c.time)
    for name, moments in (("request out", went_out), ("server arrival", arrived)):
        delays = sorted(
            t - slot
            for chat, taken in slots.items()
            for slot, t in zip(taken, moments.get(chat, ()), strict=False)
        )
        if delays:
            print(
                f"slot to {name + ':':<15} p50 {1000 * percentile(delays, 50):.0f} ms, "
                f"p99 {1000 * percentile(delays, 99):.0f} ms, "
                f"max {1000 * delays[-1]:.0f} ms  ({len(delays):,} sends)"
            )
    print(
        f"429s:            {too_many} (server counted {rejected_rate_limit} rejected, "
        f"{accepted_total:,} accepted)  (target 0)"
    )
    print("wall time by dispatcher phase:")
    print("\n".join(phases.lines(elapsed)))
    met = too_many == 0 and rejected_rate_limit == 0 and overall_rate >= 0.95 * TELEGRAM_RATE
    print(f"target met:      {'yes' if met else 'NO'}")
    return met


# --- main --------------------------------------------------------------------------------------


def run_children(argv: list[str]) -> int:
    """``--db both``: each database in its own process, one after the other."""
    failed = False
    for kind in ("sqlite", "postgresql"):
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), *argv, "--db", kind]
        )
        # Ctrl+C reaches the child too; SIGTERM is passed on. Either way the child cleans up.
        signal.signal(signal.SIGTERM, lambda *_, child=child: child.terminate())
        while True:
            try:
                code = child.wait()
                break
            except KeyboardInterrupt:
                continue
        if code < 0 or code == INTERRUPTED:
            return INTERRUPTED
        failed |= code != 0
    return 1 if failed else 0


async def run_cancellable(
    run: Callable[[argparse.Namespace, str], Awaitable[bool]], args: argparse.Namespace
) -> bool:
    """``run``, cancelled (so that it cleans up) on SIGTERM as on Ctrl+C."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args, args.db)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--items", type=int, default=100_000, help="throughput run: reminders")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help=f"Dispatcher.batch_size (default {_DEFAULTS['batch_size']})",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help=f"Dispatcher.concurrency (default {_DEFAULTS['concurrency']})",
    )
    parser.add_argument(
        "--anchor-items",
        type=int,
        default=None,
        help="throughput run: raw sends measured before the dispatcher (default --items)",
    )
    parser.add_argument("--limits", action="store_true", help="the rate-limit run instead")
    parser.add_argument(
        "--busy",
        action="store_true",
        help="limits run: CPU-bound processes on the other cores for the whole run",
    )
    parser.add_argument(
        "--server-in-process",
        action="store_true",
        help="throughput run: the fake Bot API in the bot's event loop, not a child process",
    )
    parser.add_argument("--seconds", type=float, default=60.0, help="limits run: duration")
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="limits run: seconds left out of the steady-state rate",
    )
    parser.add_argument(
        "--multi-chats",
        type=int,
        default=30,
        help="limits run: chats with several overdue reminders",
    )
    parser.add_argument(
        "--per-chat",
        type=int,
        default=3,
        help="limits run: overdue reminders in each of those chats",
    )
    parser.add_argument(
        "--chat-gap",
        type=float,
        default=20 * 3600,
        help="limits run: seconds between the due times of one chat's reminders",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="PostgreSQL: skip ANALYZE after loading (planner without statistics)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="throughput run: cProfile the ticks, write FILE.<db>"
    )
    args = parser.parse_args()
    if args.anchor_items is None:
        args.anchor_items = args.items
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]

    if args.db == "both":
        argv = sys.argv[1:]
        sys.exit(run_children(argv))
    try:
        met = asyncio.run(run_cancellable(limits if args.limits else throughput, args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("\ninterrupted; cleaned up", file=sys.stderr)
        sys.exit(INTERRUPTED)
    sys.exit(0 if met else 1)


if __name__ == "__main__":
    main()

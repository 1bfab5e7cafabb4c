"""How fast a real ``remindbot run`` sends a backlog with its default settings.

    python bench/backlog_bench.py [--db sqlite|postgresql] [--reminders 2000]
                                  [--tick SECONDS] [--checkout PATH]

A clinic's send time, or a restart after an outage, puts many reminders due at once. Each
patient (its own chat) has one reminder, all due when the bot starts; ``remindbot run``
(default tick, default 30 messages per second) sends them to the fake Bot API, which runs in
this process and enforces Telegram's 30 per second and 1 per second per chat with 429s. The
anchor is that limit: prints messages per second from the first send to the last, as a
fraction of 30/s, the 429s, the bot's CPU time beside the wall time, and the load average.
``--checkout`` runs the bot from another work tree of this repository with the same schema
(e.g. ``git worktree add /tmp/before HEAD~1``) in the same run, for a before/after figure.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

os.environ["PTB_TIMEDELTA"] = "1"
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from bench.dispatch_bench import TOKEN, add_due  # noqa: E402
from scheduler.db import create_engine, migrate, session_factory  # noqa: E402
from tests.fake_bot_api import FakeBotApi  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
LIMIT = 30.0


async def run(args: argparse.Namespace, tree: Path) -> str:
    folder = tempfile.TemporaryDirectory(prefix="backlog_bench_")
    name = None
    if args.db == "sqlite":
        url = f"sqlite+aiosqlite:///{Path(folder.name) / 'remindbot.db'}"
    else:
        name = f"remindbot_backlog_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        await admin.dispose()
        url = make_url(args.postgres_url).set(database=name).render_as_string(False)
    engine = create_engine(url)
    try:
        await migrate(engine)
        now = datetime.now(UTC)
        await add_due(
            session_factory(engine), [[now - timedelta(minutes=1)]] * args.reminders, created_at=now
        )
        async with FakeBotApi() as server:
            server.max_long_poll = 1.0
            server.enable_rate_limit()
            env = {
                "TELEGRAM_BOT_TOKEN": TOKEN,
                "TELEGRAM_API_BASE_URL": server.base_url,
                "DATABASE_URL": url,
                "REMINDBOT_HTTP_PORT": "0",
                "REMINDBOT_LOG_LEVEL": "WARNING",
            }
            if args.tick is not None:
                env["REMINDBOT_TICK_SECONDS"] = str(args.tick)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            bot = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "run",
                env={**os.environ, **env, "PYTHONPATH": str(tree)},
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=tree,
            )
            started = time.monotonic()

            def sent() -> list[float]:
                return [c.time for c in server.calls_to("sendMessage") if c.status == 200]

            while len(sent()) < args.reminders:
                if time.monotonic() - started > args.reminders / 5 + 60:
                    raise SystemExit("the bot did not send everything in time")
                await asyncio.sleep(0.1)
            bot.terminate()
            await bot.wait()
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            times = sorted(sent())
            limited = sum(1 for c in server.calls_to("sendMessage") if c.status == 429)
    finally:
        await engine.dispose()
        if name is not None:
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            async with admin.connect() as connection:
                await connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
            await admin.dispose()
        folder.cleanup()
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return (
        f"{tree.name or tree}: {len(times):,} sent in {span:.1f} s: {rate:.1f}/s, "
        f"{rate / LIMIT:.0%} of {LIMIT:.0f}/s, {limited} × 429, "
        f"bot CPU {cpu:.1f} s (wall {time.monotonic() - started:.1f} s from its start)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--reminders", type=int, default=2000)
    parser.add_argument("--tick", type=float, help="REMINDBOT_TICK_SECONDS (default: the bot's)")
    parser.add_argument("--checkout", type=Path, action="append", default=[])
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("REMINDBOT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL),
    )
    args = parser.parse_args()
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}, {args.db}")
    for tree in [ROOT, *(path.resolve() for path in args.checkout)]:
        print(asyncio.run(run(args, tree)))
    print(f"load average {' '.join(f'{n:.2f}' for n in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
